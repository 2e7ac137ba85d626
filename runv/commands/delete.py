"""runv delete [--force] ID"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")
    p.add_argument("-f", "--force", action="store_true",
                   help="kill the container and its VM if it is still running")


def run(args: argparse.Namespace) -> int:
    from runv.container import Container
    from runv.errors import NotFound

    try:
        c = Container.load(args.root, args.id, lock=True)
    except NotFound:
        if args.force:
            return 0
        raise
    c.delete(force=args.force)
    return 0
