"""runv start ID"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")


def run(args: argparse.Namespace) -> int:
    from runv.container import Container

    c = Container.load(args.root, args.id, lock=True)
    c.start()
    return 0
