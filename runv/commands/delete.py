"""runv delete [--force] ID"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")
    p.add_argument("-f", "--force", action="store_true",
                   help="kill the container and its VM if it is still running")


def run(args: argparse.Namespace) -> int:
    from runv.container import Container
    from runv.errors import CorruptState, NotFound
    from runv.state import StateDir

    sd = StateDir(args.root, args.id)
    try:
        sd.lock()
        c = Container(sd, sd.read())
    except NotFound:
        if args.force:
            return 0
        raise
    except CorruptState:
        if not args.force:
            raise
        from runv.orphan import clean_up

        clean_up(sd)
        return 0
    c.delete(force=args.force)
    return 0
