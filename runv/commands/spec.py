"""runv spec [--bundle B]: write a default config.json, like `runc spec`."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--bundle", default=".", help="directory to write config.json in")
    p.add_argument("--rootless", action="store_true", help="accepted for compatibility")


def run(args: argparse.Namespace) -> int:
    import json
    import os

    from runv.errors import Exists
    from runv.oci.default_spec import default_config

    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise Exists("File config.json exists. Remove it first")
    with open(path, "w") as f:
        json.dump(default_config(rootless=args.rootless), f, indent="\t")
        f.write("\n")
    return 0
