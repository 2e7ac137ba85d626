"""runv list [--format table|json] [--quiet]"""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", default="table", choices=["table", "json"])
    p.add_argument("-q", "--quiet", action="store_true", help="display only container ids")


def run(args: argparse.Namespace) -> int:
    import sys

    from runv.container import Container
    from runv.errors import CorruptState, NotFound
    from runv.state import list_ids

    states = []
    for cid in list_ids(args.root):
        try:
            states.append(Container.load(args.root, cid).oci_state())
        except NotFound:
            continue  # deleted while we listed
        except CorruptState as e:
            print(f"runv: warning: {e}; skipped", file=sys.stderr)
    if args.quiet:
        for s in states:
            print(s["id"])
    elif args.format == "json":
        print(json.dumps(states))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], "root")
                 for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0
