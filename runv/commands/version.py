"""runv version"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from runv import OCI_VERSION, __version__

    print(f"runv version {__version__}\nspec: {OCI_VERSION}")
    return 0
