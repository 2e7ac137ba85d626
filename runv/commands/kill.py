"""runv kill [--all] ID [SIGNAL]"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")
    p.add_argument("signal", nargs="?", default="TERM")
    p.add_argument("-a", "--all", action="store_true", help="signal every process of the container")


def run(args: argparse.Namespace) -> int:
    from runv.container import Container
    from runv.signals import parse_signal

    signo = parse_signal(args.signal)
    Container.load(args.root, args.id, lock=True).kill(signo, args.all)
    return 0
