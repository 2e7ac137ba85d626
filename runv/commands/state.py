"""runv state ID: print the OCI state as JSON."""
from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")


def run(args: argparse.Namespace) -> int:
    from runv.container import Container

    print(json.dumps(Container.load(args.root, args.id).oci_state(), indent=2))
    return 0
