"""The launcher's entry: `runv state ID`, and `runv start ID` and `runv kill
ID [SIGNAL]` of a container of its own VM, are answered here with the lightest
imports (engines call them for every container); everything else, and every
case out of the ordinary, goes to runv.cli."""
from __future__ import annotations

import sys

_GLOBAL_WITH_VALUE = {"--root", "--log", "--log-format"}


def _state_request(argv: list[str], verb: str = "state") -> tuple[str, str] | None:
    """(root, id) if argv is `[global flags] VERB ID`, else None."""
    parsed = _global_flags(argv)
    if parsed is None:
        return None
    root, rest = parsed
    if len(rest) != 2 or rest[0] != verb or rest[1].startswith("-"):
        return None
    return root, rest[1]


def _kill_request(argv: list[str]) -> tuple[str, str, str] | None:
    """(root, id, signal) if argv is `[global flags] kill ID [SIGNAL]`, else None."""
    parsed = _global_flags(argv)
    if parsed is None:
        return None
    root, rest = parsed
    if len(rest) not in (2, 3) or rest[0] != "kill" or any(a.startswith("-") for a in rest[1:]):
        return None
    return root, rest[1], rest[2] if len(rest) == 3 else "TERM"


def _global_flags(argv: list[str]) -> tuple[str, list[str]] | None:
    """(--root's value, what follows the global flags), or None for a flag this path does not know."""
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
    return root, argv[i:]


START_REQUEST = b'{"op": "start"}\n'  # what runv.sandbox.client.call("start") sends
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def _kill(root: str, cid: str, name: str) -> int | None:
    """`runv kill ID [SIGNAL]` as commands/kill.py does it (a bad signal: the full CLI says so)."""
    from runv.errors import RunvError
    from runv.signals import parse_signal

    try:
        signo = parse_signal(name)
    except RunvError:
        return None
    request = f'{{"op": "kill", "signal": {signo}, "all": false}}\n'.encode()  # as client.call sends it
    return _ask(root, cid, ("created", "running", "paused"), request)


def _ask(root: str, cid: str, statuses: tuple[str, ...], request: bytes) -> int | None:
    """Send `request` to the shim of a container of its own VM whose live status
    is one of `statuses`, as Container's actions do: the exit status, or None to
    leave it to the full CLI (anything else, before anything is sent: that one
    names the problem)."""
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
            and live_status(data.get("status", "creating"), data.get("pid", 0), data.get("pid_start")) in statuses):
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
            client.exchange(sock, request)
    except Exception as e:  # noqa: BLE001 - said as the full CLI says it
        from runv.cli import report

        return report(sys.argv[1:], e)
    return 0


def _action(argv: list[str]) -> int | None:
    """The exit status of a light start or kill, or None to go on."""
    start, kill = _state_request(argv, "start"), _kill_request(argv)
    if start:
        return _ask(*start, ("created",), START_REQUEST)
    if kill:
        return _kill(*kill)
    return None


def entry() -> None:
    code = _action(sys.argv[1:])
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
