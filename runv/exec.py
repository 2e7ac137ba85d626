"""`runv exec`: run one more process in a running container.

The shim relays the new process's stdio; runv hands it the fds over the control
socket (SCM_RIGHTS) and then waits on the same connection for the exit status.
With --detach a small waiter process takes over that wait: its pid goes into
the pid file, and it exits with the process's status, as engines expect.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
from typing import Any, BinaryIO

from runv import errors, faultpoint
from runv.container import Container
from runv.files import write_atomic
from runv.foreground import forward_signals, raw_tty
from runv.sandbox import client as shim_client


def process_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The process to exec, checked as runc checks it, and small enough for one
    EXEC frame: nothing reaches the container's shim that it would refuse."""
    process = _process_file(args.process) if args.process else _process_from_flags(args)
    try:
        from runv.agent.records import exec_payload

        exec_payload(process)
    except errors.RunvError:
        raise
    except Exception:  # a malformed process from config.json: the schema names the field
        from runv.oci.config import validate_process

        validate_process(process, "process")
        raise
    return process


def _process_file(path: str) -> dict[str, Any]:
    from runv.oci.config import validate_process

    try:
        with open(path, "rb") as f:
            process = json.loads(f.read())
    except OSError as e:
        raise errors.SpecError(f"open {path}: {(e.strerror or str(e)).lower()}") from None
    except (ValueError, RecursionError) as e:
        raise errors.SpecError(f"{path}: invalid JSON: {str(e)[:200]}") from None
    validate_process(process, path)
    return dict(process)


def _process_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    if not args.command:
        raise errors.InvalidArgument("exec needs a command, or --process")
    process = _config_process(args.root, args.id)
    process["args"] = args.command
    process["terminal"] = args.tty
    process["env"] = list(process.get("env") or []) + args.env
    if args.cwd:
        if not os.path.isabs(args.cwd):
            raise errors.InvalidArgument(f"--cwd {args.cwd!r} must be an absolute path")
        process["cwd"] = args.cwd
    if args.user:
        uid, _, gid = args.user.partition(":")
        process["user"] = {"uid": _id(uid, "--user"), "gid": _id(gid or "0", "--user")}
    if args.additional_gids:
        if not all(0 <= g < 2**32 for g in args.additional_gids):
            raise errors.InvalidArgument("--additional-gids: gids are 0-4294967295")
        process.setdefault("user", {})["additionalGids"] = args.additional_gids
    if args.no_new_privs:
        process["noNewPrivileges"] = True
    from runv.oci.config import check_strings

    check_strings(process, "process")
    return process


def _id(text: str, flag: str) -> int:
    """A uid or gid as runc takes it: a number 0-4294967295 (no user names:
    they would be looked up in the container, which runv does not do)."""
    if not (text.isascii() and text.isdigit() and int(text) < 2**32):
        raise errors.InvalidArgument(f"{flag}: {text!r} is not a uid/gid (0-4294967295)")
    return int(text)


def _config_process(root: str, container_id: str) -> dict[str, Any]:
    """runc's default for exec: the container's own process, with other args."""
    c = Container.load(root, container_id)
    try:
        with open(os.path.join(c.state.bundle, "config.json")) as f:
            config = json.load(f)
        process = config.get("process") if isinstance(config, dict) else None
    except (OSError, ValueError, RecursionError):
        process = None
    if isinstance(process, dict):
        return dict(process)
    return {"cwd": "/", "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}


def exec_process(root: str, container_id: str, process: dict[str, Any], console_socket: str | None,
                 detach: bool, pid_file: str | None) -> int:
    c = Container.load(root, container_id)
    if c.status.value not in ("created", "running"):
        raise errors.InvalidState(f"cannot exec in a {c.status.value} container")
    stdio, fds, raw_tty = stdio_fds(process, console_socket, detach)
    conn = shim_client.connect(c.control_dir)
    try:
        msg = json.dumps({"op": "exec", "process": process, "stdio": stdio, **c.addressed()}).encode() + b"\n"
        socket.send_fds(conn, [msg], fds)
        faultpoint.reached("exec.sent")
        if console_socket:
            os.close(fds[0])
        replies = conn.makefile("rb")
        reply = shim_client.read_reply(replies)
        if "error" in reply:
            raise errors.from_wire(reply)
        conn.settimeout(None)  # the process runs as long as it likes
        if detach:
            waiter = _fork_waiter(replies)
            if pid_file:
                write_atomic(pid_file, str(waiter))
            return 0
        if pid_file:
            write_atomic(pid_file, str(os.getpid()))
        return _wait(replies, c, reply["stream"], raw_tty)
    finally:
        conn.close()


def stdio_fds(process: dict[str, Any], console_socket: str | None,
           detach: bool) -> tuple[list[str], list[int], bool]:
    if not process.get("terminal"):
        if console_socket:
            raise errors.InvalidArgument("--console-socket given but the process has no terminal")
        names = [n for n, fd in (("stdin", 0), ("stdout", 1), ("stderr", 2)) if _is_open(fd)]
        return names, [("stdin", "stdout", "stderr").index(n) for n in names], False
    if console_socket:
        from runv.host.console import open_for_socket

        return ["pty"], [open_for_socket(console_socket)], False
    if detach or not os.isatty(0):
        raise errors.InvalidArgument("cannot allocate a tty without a terminal or --console-socket")
    return ["pty"], [0], True


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _wait(replies: BinaryIO, c: Container, stream: int, raw: bool) -> int:
    def send(signo: int) -> None:
        try:
            shim_client.call(c.control_dir, "kill", signal=signo, stream=stream, **c.addressed())
        except errors.RunvError:
            pass

    forward_signals(send)
    with raw_tty(raw):
        reply = shim_client.read_reply(replies)
    if "exit" not in reply:
        raise errors.RunvError(reply.get("error", "lost the exec'd process"))
    return int(reply["exit"])


def _fork_waiter(replies: BinaryIO) -> int:
    pid = os.fork()
    if pid:
        return pid
    # The waiter: no stdio of the caller (engines read it through pipes), one job.
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    code = 255
    try:
        reply = shim_client.read_reply(replies)
        code = int(reply.get("exit", 255))
    except (OSError, ValueError, errors.RunvError):
        pass
    os._exit(code)
