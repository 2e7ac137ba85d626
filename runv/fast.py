"""The launcher's entry: `runv state ID` is answered here with the lightest
imports (engines call it many times per container); everything else goes to
runv.cli."""
from __future__ import annotations

import sys

_GLOBAL_WITH_VALUE = {"--root", "--log", "--log-format"}


def _state_request(argv: list[str]) -> tuple[str, str] | None:
    """(root, id) if argv is `[global flags] state ID`, else None."""
    root = "/run/runv"
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        flag, eq, value = argv[i].partition("=")
        if flag in _GLOBAL_WITH_VALUE:
            if not eq:
                i += 1
                if i == len(argv):
                    return None
                value = argv[i]
            if flag == "--root":
                root = value
        elif flag != "--debug":
            return None
        i += 1
    rest = argv[i:]
    if len(rest) != 2 or rest[0] != "state" or rest[1].startswith("-"):
        return None
    return root, rest[1]


def entry() -> None:
    request = _state_request(sys.argv[1:])
    if request:
        import os

        from runv import tinyjson

        root, cid = request
        path = os.path.join(root, cid, "state.json")
        if os.path.isabs(root) and "/" not in cid and cid not in (".", "..") and os.path.isfile(path):
            try:
                with open(path) as f:
                    data = tinyjson.loads(f.read())
            except (OSError, ValueError, RecursionError):
                data = None
            from runv.ocistate import oci_state, well_formed

            if well_formed(data, cid):
                try:
                    print(tinyjson.dumps(oci_state(data)), flush=True)
                except BrokenPipeError:  # the reader went away: no traceback for it
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                    sys.exit(1)
                sys.exit(0)
    # Anything else, including every error, gets the full CLI.
    from runv.cli import entry as full_entry

    full_entry()
