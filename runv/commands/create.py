"""runv create [--bundle B] [--pid-file F] [--console-socket S] ID"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")
    p.add_argument("-b", "--bundle", default=".", help="path to the bundle (default: .)")
    p.add_argument("--pid-file", default=None, help="file to write the container's pid to")
    p.add_argument("--console-socket", default=None,
                   help="unix socket to send the pty master to, when process.terminal is set")
    p.add_argument("--no-pivot", action="store_true", help="accepted for compatibility")
    p.add_argument("--no-new-keyring", action="store_true", help="accepted for compatibility")
    p.add_argument("--preserve-fds", type=int, default=0, help="accepted for compatibility")


def run(args: argparse.Namespace) -> int:
    from runv.launch import create

    create(args.root, args.id, args.bundle, args.pid_file, args.console_socket)
    return 0
