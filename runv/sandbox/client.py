"""Talk to a container's shim over its control socket: one JSON line each way."""
from __future__ import annotations

import os
import socket
from typing import Any, BinaryIO

from runv import errors, tinyjson

SOCKET = "shim.sock"
# The shim answers every request within REQUEST_TIMEOUT (a paused or stuck guest
# agent included); a client gives up on a shim that does not, after REPLY_TIMEOUT.
REQUEST_TIMEOUT = 10.0
REPLY_TIMEOUT = REQUEST_TIMEOUT + 10.0

def connect(state_dir: str, timeout: float | None = REPLY_TIMEOUT) -> socket.socket:
    """A socket connected to the shim of the container in `state_dir`."""
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


def read_reply(f: BinaryIO) -> dict[str, Any]:
    """One JSON line from the shim, read from `sock.makefile("rb")` (replies can
    arrive back to back); a shim that hung up is an error."""
    try:
        data = f.readline()
    except TimeoutError:
        raise errors.InvalidState("the container's shim did not answer within "
                                  f"{REPLY_TIMEOUT:.0f} s") from None
    if not data:
        raise errors.InvalidState("the container's shim went away during the request")
    try:
        reply = tinyjson.loads(data.decode())
    except (ValueError, RecursionError):
        reply = None
    if not isinstance(reply, dict):
        raise errors.InvalidState("the container's shim sent garbage")
    return reply


def call(state_dir: str, op: str, timeout: float = REPLY_TIMEOUT, **args: Any) -> dict[str, Any]:
    import json

    with connect(state_dir, timeout) as s:
        return exchange(s, json.dumps({"op": op, **args}).encode() + b"\n")


def exchange(s: socket.socket, request: bytes) -> dict[str, Any]:
    """Send one request line on a connected socket and read its reply (an error reply raises)."""
    try:
        s.sendall(request)
    except OSError as e:
        raise errors.InvalidState(f"the container's shim does not answer: {e.strerror}") from None
    reply = read_reply(s.makefile("rb"))
    if "error" in reply:
        raise errors.from_wire(reply)
    return reply
