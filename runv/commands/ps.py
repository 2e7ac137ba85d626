"""runv ps [--format table|json] ID"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")
    p.add_argument("-f", "--format", default="table", choices=["table", "json"])
    p.add_argument("ps_args", nargs="*", help="ignored: the processes live in the guest")


def run(args: argparse.Namespace) -> int:
    import json

    from runv.container import Container

    pids = Container.load(args.root, args.id).processes()
    if args.format == "json":
        print(json.dumps(pids))
    else:
        print("PID")
        for pid in pids:
            print(pid)
    return 0
