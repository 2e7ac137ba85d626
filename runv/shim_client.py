"""Talk to a container's shim over its control socket: one JSON line each way."""
from __future__ import annotations

import json
import os
from typing import Any

from runv import errors

SOCKET = "shim.sock"

_ERRORS = {
    "NotFound": errors.NotFound,
    "InvalidArgument": errors.InvalidArgument,
    "SpecError": errors.SpecError,
    "InvalidState": errors.InvalidState,
    "AgentError": errors.AgentError,
    "QemuError": errors.QemuError,
}


def connect(state_dir: str, timeout: float | None = 60.0):
    """A socket connected to the shim of the container in `state_dir`."""
    import socket

    # Engines' state dirs are deep: reach the socket through a short /proc path,
    # since a unix socket path may not exceed 107 bytes.
    dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(f"/proc/self/fd/{dir_fd}/{SOCKET}")
    except OSError as e:
        s.close()
        raise errors.InvalidState(f"the container's shim does not answer: {e.strerror}") from None
    finally:
        os.close(dir_fd)
    return s


def read_reply(f) -> dict[str, Any]:
    """One JSON line from the shim, read from `sock.makefile("rb")` (replies can
    arrive back to back); a shim that hung up is an error."""
    data = f.readline()
    if not data:
        raise errors.InvalidState("the container's shim went away during the request")
    return json.loads(data)


def call(state_dir: str, op: str, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
    with connect(state_dir, timeout) as s:
        s.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
        reply = read_reply(s.makefile("rb"))
    if "error" in reply:
        raise _ERRORS.get(reply.get("kind", ""), errors.RunvError)(reply["error"])
    return reply
