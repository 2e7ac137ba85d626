"""runv kill [--all] ID [SIGNAL]"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")
    p.add_argument("signal", nargs="?", default="TERM")
    p.add_argument("-a", "--all", action="store_true", help="signal every process of the container")


def parse_signal(name: str) -> int:
    import signal

    from runv.errors import InvalidArgument

    if name.isdigit():
        return int(name)
    name = name.upper()
    sig = getattr(signal, name if name.startswith("SIG") else "SIG" + name, None)
    if not isinstance(sig, signal.Signals):
        raise InvalidArgument(f"unknown signal {name!r}")
    return int(sig)


def run(args: argparse.Namespace) -> int:
    from runv.container import Container

    signo = parse_signal(args.signal)
    Container.load(args.root, args.id, lock=True).kill(signo, args.all)
    return 0
