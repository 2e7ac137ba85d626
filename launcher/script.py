"""Writes runv's Python path: the script that the launcher (launcher/runv.c)
execs for everything but the `runv state ID` it answers itself.

    python launcher/script.py OUT REPO

OUT gets a script for the Python running this (its venv's packages) and the
runv package in REPO, written atomically. `make install` writes
$(SHARE_DIR)/runv.py; the tests write their own.
"""
from __future__ import annotations

import os
import sys
import sysconfig


def text(python: str, repo: str, purelib: str) -> str:
    # The script runs without site processing (-S): engines call runv many
    # times per container. Its own directory (sys.path[0]) would shadow the
    # package with this file, runv.py: the repo and the venv's packages take
    # its place. argv[0] is what argparse and runv's messages call the program.
    return (f"#!{python} -S\n"
            "import sys\n"
            "sys.argv[0] = 'runv'\n"
            f"sys.path[0:1] = [{repo!r}, {purelib!r}]\n"
            "from runv.fast import entry\n"
            "entry()\n")


def write(out: str, repo: str) -> None:
    new = out + ".new"
    with open(new, "w") as f:
        f.write(text(sys.executable, os.path.abspath(repo), sysconfig.get_path("purelib")))
    os.chmod(new, 0o755)
    os.replace(new, out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    write(sys.argv[1], sys.argv[2])
