"""A pod's next container: which pod it belongs to, and its light shim.

A container whose network namespace is that of a running runv container that
holds a pod (a CRI pause container, Podman's infra container; the CRI
annotations name it, but the namespace decides) is not given a VM of its own:
it is created in that pod's VM (runv.sandbox.pod). Its pid on the host is a
light shim's, forked by `create` as a shim would be: it hands the container's
stdio and files (its rootfs and bind sources, as detached mount trees cloned
in the caller's mount namespace, where the engine mounted them) to the pod's
shim, reports the container created, then waits for its exit status and exits
with it, as engines expect of a container's pid.
"""
from __future__ import annotations

import json
import os
import socket
from typing import TYPE_CHECKING, Any, NoReturn

from runv import errors, faultpoint
from runv.daemon import detach, null_stdio, report
from runv.host import proc
from runv.state import State, StateDir, list_ids

if TYPE_CHECKING:
    from runv.oci.config import Bundle

CREATE_TIMEOUT = 120.0  # the pod's hooks and the guest's CREATE, on a busy TCG host


def find_pod(root: str, config: dict[str, Any]) -> str:
    """The id of the running container holding the pod `config` joins, or ""."""
    from runv.oci.pod import is_pod_sandbox, sandbox_id

    annotations = config.get("annotations") or {}
    netns = _network_namespace(config)
    if netns is None or not isinstance(annotations, dict) or is_pod_sandbox(annotations):
        return ""
    named = sandbox_id(annotations)
    for cid in ([named] if named else list_ids(root)):
        try:
            state = StateDir(root, cid).read()
        except errors.RunvError:
            continue
        if state.pod and state.status in ("created", "running") and \
                proc.alive(state.pid, state.pid_start) and _same_file(f"/proc/{state.pid}/ns/net", netns):
            return cid
    return ""


def _network_path(config: dict[str, Any]) -> str | None:
    """The path of the network namespace the config names (an unchecked config: the shim validates it)."""
    linux = config.get("linux")
    namespaces = linux.get("namespaces") if isinstance(linux, dict) else None
    for ns in namespaces if isinstance(namespaces, list) else []:
        if isinstance(ns, dict) and ns.get("type") == "network" and isinstance(ns.get("path"), str):
            return str(ns["path"])
    return None


def _network_namespace(config: dict[str, Any]) -> os.stat_result | None:
    path = _network_path(config)
    try:
        return os.stat(path) if path else None
    except OSError:
        return None


def _same_file(path: str, st: os.stat_result) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def light_shim(sd: StateDir, state: State, bundle: Bundle, console_socket: str | None,
               sync_fd: int) -> NoReturn:
    """The light shim's life, in the forked child of `runv create`."""
    code = 255
    try:
        detach(keep={sync_fd})
        _join_pod_network(bundle.config)
        state.pid = os.getpid()
        state.pid_start = proc.start_time(state.pid)
        sd.write(state)
        replies = _ask_create(sd, state, bundle, console_socket)
        report(sync_fd, {"ok": True, "pid": state.pid})
        code = _wait_exit(replies)
    except errors.RunvError as e:
        report(sync_fd, errors.to_wire(e))
    except OSError as e:
        report(sync_fd, errors.to_wire(errors.RunvError(str(e))))
    except BaseException as e:  # noqa: BLE001 - never a traceback
        report(sync_fd, errors.to_wire(errors.RunvError(f"internal error: {type(e).__name__}: {e}")))
    os._exit(code)


def _join_pod_network(config: dict[str, Any]) -> None:
    """The light shim, the container's pid, lives in the pod's network namespace,
    as a runc container's pid would: an engine that names this container's
    namespace by its pid (`docker run --network container:<this one>`) then
    names the pod's, and its container joins the pod too (not the host's network)."""
    from runv.host import syscalls

    path = _network_path(config)
    if not path:
        raise errors.InvalidState("the pod's network namespace is gone")
    try:
        syscalls.setns(path, syscalls.CLONE_NEWNET)
    except OSError as e:
        raise errors.RunvError(f"cannot join network namespace {path}: {e.strerror}") from None


def _ask_create(sd: StateDir, state: State, bundle: Bundle, console_socket: str | None) -> Any:
    """Hand the container's stdio and files to the pod's shim and ask it to create the container."""
    from runv.exec import stdio_fds
    from runv.sandbox import client

    trees = _file_trees(bundle)
    names, fds, _ = stdio_fds(bundle.config.get("process") or {}, console_socket, detach=False)
    conn = client.connect(StateDir(sd.root, state.sandbox).path, CREATE_TIMEOUT)
    msg = json.dumps({"op": "create", "container": state.id, "stdio": names}).encode() + b"\n"
    try:
        socket.send_fds(conn, [msg], fds + trees)
    except OSError as e:
        raise errors.InvalidState(f"the pod's shim does not answer: {e.strerror}") from None
    faultpoint.reached("member.sent")
    for fd in trees + (fds if console_socket else []):
        os.close(fd)
    null_stdio()  # the pod's shim holds the container's stdio now
    replies = conn.makefile("rb")
    reply = client.read_reply(replies)
    if "error" in reply:
        raise errors.from_wire(reply)
    conn.settimeout(None)  # the container runs as long as it likes
    return replies


def _file_trees(bundle: Bundle) -> list[int]:
    """The rootfs, then each bind source in the order of config.json's mounts
    (runv.oci.mounts.plan's, as the pod's shim computes it too)."""
    from runv.oci import mounts
    from runv.qemu import podshare

    config = bundle.config
    if (config.get("root") or {}).get("readonly"):
        from runv.sandbox import mountpoints

        mountpoints.make(bundle.rootfs, config.get("mounts") or [])
    plan = mounts.plan(config, bundle.path)
    return [podshare.clone(bundle.rootfs, True), *(podshare.clone(b.source, b.recursive) for b in plan.binds)]


def _wait_exit(replies: Any) -> int:
    from runv.sandbox import client

    try:
        return int(client.read_reply(replies).get("exit", 255))
    except (OSError, ValueError, errors.RunvError):
        return 255  # the pod's shim is gone, and with it the VM
