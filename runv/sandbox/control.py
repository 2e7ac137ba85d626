"""The shim's control socket (`shim.sock` in the state dir): one JSON line in,
with fds for an exec's stdio (SCM_RIGHTS), and one JSON line out per answer.
Requests are checked here and handed to the Sandbox; no client is trusted to
have checked them, and no request can take the container down."""
from __future__ import annotations

import json
import os
import selectors
import socket
from typing import Any, TypeGuard

from runv import errors, log
from runv.agent import protocol as P
from runv.errors import RunvError
from runv.sandbox.client import SOCKET
from runv.sandbox.sandbox import Sandbox
from runv.status import Status

OPS = ("start", "kill", "ps", "pause", "resume", "exec", "update", "create")
WITH_FDS = ("exec", "create")
MAX_FDS = 253  # SCM_MAX_FD: a pod's container brings its stdio, its rootfs and each bind source


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


class Control:
    def __init__(self, sandbox: Sandbox, state_dir: str) -> None:
        self.sandbox = sandbox
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        os.chdir(state_dir)  # bind relatively: the absolute path may be too long
        s.bind(SOCKET)
        s.listen(16)
        self.sock = s
        sandbox.loop.watch(s, selectors.EVENT_READ, self._on_accept)

    def _on_accept(self, mask: int) -> None:
        conn, _ = self.sock.accept()
        conn.settimeout(5.0)
        fds: list[int] = []
        try:
            data = b""
            while not data.endswith(b"\n"):
                chunk, more_fds, _, _ = socket.recv_fds(conn, 65536, MAX_FDS)
                fds += more_fds
                if not chunk:
                    break
                data += chunk
            req = json.loads(data)
        except (OSError, ValueError):
            conn.close()
            for fd in fds:
                os.close(fd)
            return
        try:
            handle(self.sandbox, conn, req, fds)
        except Exception as e:  # noqa: BLE001 - a bad request must never take the container down
            log.error(f"control request refused: {type(e).__name__}: {e}")
            error = e if isinstance(e, RunvError) else RunvError(f"bad request: {type(e).__name__}: {e}")
            try:
                conn.sendall(json.dumps(errors.to_wire(error)).encode() + b"\n")
            except OSError:
                pass
            conn.close()


def handle(sb: Sandbox, conn: socket.socket, req: dict[str, Any], fds: list[int]) -> None:
    op = req.get("op")
    closed = False

    def answer(reply: dict[str, Any], close: bool = True) -> None:
        nonlocal closed
        if closed:
            return  # the client has had its answer (a timeout) already
        try:
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        if close:
            conn.close()
            closed = True

    def refuse(e: RunvError) -> None:
        answer(errors.to_wire(e))

    def fail(why: str) -> None:
        refuse(errors.AgentError(why))

    status = Status(sb.state.status)
    if op not in WITH_FDS or sb.exit_code is not None or status is Status.PAUSED:
        for fd in fds:
            os.close(fd)
        fds = []
    try:
        if sb.exit_code is not None and op in OPS:
            refuse(errors.InvalidState("container not running"))
        elif status is Status.PAUSED and op in ("start", "ps", "exec", "create"):
            refuse(errors.InvalidState(f"container {sb.state.id} is paused"))
        elif op == "create":
            from runv.sandbox import pod

            pod.create(sb, _text(req.get("container")), conn, req.get("stdio", []), fds, answer, fail)
        else:
            _container_op(sb, op, req, fds, answer, refuse, fail)
    except (KeyError, TypeError, ValueError, P.ProtocolError) as e:
        refuse(RunvError(f"bad {op} request: {e}"))


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a container id")
    return v


def _container_op(sb: Sandbox, op: Any, req: dict[str, Any], fds: list[int], answer: Any, refuse: Any,
                  fail: Any) -> None:
    """An op on a container of the sandbox: its own, or (`container`) one of its pod's."""
    try:
        c = sb.guest(req.get("container") and _text(req["container"]))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    if op == "start":
        sb.start(c, answer, fail)
    elif op == "exec":
        sb.exec(c, req["process"], req.get("stdio", []), fds, answer, fail)
    elif op == "kill":
        signo, stream = req.get("signal"), req.get("stream", c.stream)
        if not (_is_int(signo) and 1 <= signo <= 64 and _is_int(stream) and 1 <= stream < 2**32):
            refuse(errors.InvalidArgument(f"invalid signal {signo!r}"))
            return
        sb.kill(signo, bool(req.get("all")), stream, answer, fail)
    elif op == "ps":
        sb.ps(c, answer, fail)
    elif op == "update":
        change = req.get("resources")
        if not isinstance(change, dict):
            refuse(errors.InvalidArgument("bad update request: resources must be an object"))
            return
        sb.update(c, change, answer, fail)
    elif op in ("pause", "resume"):
        if c is not sb.own:
            refuse(errors.InvalidArgument(f"cannot {op} container {c.state.id}: it is one of a pod's "
                                          f"containers; {op} the pod's container {sb.state.id}"))
            return
        answer(sb.pause(op == "pause"))
    else:
        refuse(RunvError(f"unknown request {op!r}"))
