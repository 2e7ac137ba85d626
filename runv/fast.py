"""The launcher's entry: `runv state ID`, and `runv start ID` of a created
container, are answered here with the lightest imports (engines call them for
every container); everything else, and every case out of the ordinary, goes to
runv.cli."""
from __future__ import annotations

import sys

_GLOBAL_WITH_VALUE = {"--root", "--log", "--log-format"}


def _state_request(argv: list[str], verb: str = "state") -> tuple[str, str] | None:
    """(root, id) if argv is `[global flags] VERB ID`, else None."""
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
    if len(rest) != 2 or rest[0] != verb or rest[1].startswith("-"):
        return None
    return root, rest[1]


START_REQUEST = b'{"op": "start"}\n'  # what runv.sandbox.client.call("start") sends
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def _start(root: str, cid: str) -> int | None:
    """`runv start ID` as Container.start does it, for a created container of its
    own VM: the exit status, or None to leave it to the full CLI (anything else,
    before anything is sent: that one names the problem)."""
    import fcntl
    import os

    from runv import faultpoint, tinyjson
    from runv.ocistate import live_status, well_formed

    if (os.environ.get(faultpoint.ENV) or not os.path.isabs(root) or not 0 < len(cid) <= 255
            or cid in (".", "..") or not set(cid) <= _ID_CHARS):
        return None
    try:
        dir_fd = os.open(os.path.join(root, cid), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    fcntl.flock(dir_fd, fcntl.LOCK_EX)  # held until exit, as Container.load(lock=True) holds it
    try:
        with open(os.path.join(root, cid, "state.json")) as f:
            data = tinyjson.loads(f.read())
    except (OSError, ValueError, RecursionError):
        data = None
    if not (well_formed(data, cid) and not data.get("sandbox")
            and live_status(data.get("status", "creating"), data.get("pid", 0), data.get("pid_start")) == "created"):
        os.close(dir_fd)
        return None
    from runv.sandbox import client

    try:
        sock = client.connect(os.path.join(root, cid))
    except Exception:  # noqa: BLE001 - not sent: the full CLI tries again and says why
        os.close(dir_fd)
        return None
    try:
        with sock:
            client.exchange(sock, START_REQUEST)
    except Exception as e:  # noqa: BLE001 - said as the full CLI says it
        from runv.cli import report

        return report(sys.argv[1:], e)
    return 0


def entry() -> None:
    start = _state_request(sys.argv[1:], "start")
    if start:
        code = _start(*start)
        if code is not None:
            sys.exit(code)
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
