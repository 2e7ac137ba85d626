"""runv run [--bundle B] [--pid-file F] [--detach] ID: create, start, and (unless
detached) wait for the container and delete it, exiting with its status."""
from __future__ import annotations

import argparse

from runv.commands import create


def add_arguments(p: argparse.ArgumentParser) -> None:
    create.add_arguments(p)
    p.add_argument("-d", "--detach", action="store_true", help="detach from the container")
    p.add_argument("--keep", action="store_true", help="do not delete the container after it exits")


def run(args: argparse.Namespace) -> int:
    from runv.launch import run_container

    return run_container(args.root, args.id, args.bundle, args.pid_file, args.console_socket,
                         detach=args.detach, keep=args.keep)
