"""runv kill [--all] ID [SIGNAL]"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")
    p.add_argument("signal", nargs="?", default="TERM")
    p.add_argument("-a", "--all", action="store_true", help="signal every process of the container")


MAX_SIGNAL = 64  # SIGRTMAX on Linux


def parse_signal(name: str) -> int:
    """A signal number (1-64) or name (TERM, SIGTERM, sigterm), as runc takes them."""
    import signal

    from runv.errors import InvalidArgument

    if name.isascii() and name.isdigit():
        if not 1 <= int(name) <= MAX_SIGNAL:
            raise InvalidArgument(f"invalid signal {name!r}: signals are 1-{MAX_SIGNAL}")
        return int(name)
    upper = name.upper()
    sig = getattr(signal, upper if upper.startswith("SIG") else "SIG" + upper, None)
    if not isinstance(sig, signal.Signals) or not 1 <= sig <= MAX_SIGNAL:
        raise InvalidArgument(f"unknown signal {name!r}")
    return int(sig)


def run(args: argparse.Namespace) -> int:
    from runv.container import Container

    signo = parse_signal(args.signal)
    Container.load(args.root, args.id, lock=True).kill(signo, args.all)
    return 0
