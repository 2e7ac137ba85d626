"""The namespaces the shim (the container's pid on the host) joins or makes, so
that host-side views of the container match what its config names. The guest
makes its own for the processes inside; the flags are runv.host.syscalls'."""
from __future__ import annotations

import errno
import os
from typing import Any

from runv.errors import RunvError
from runv.host import syscalls
from runv.state import State

HOST_NAMESPACES = ("ipc", "uts", "cgroup")
# Made anew but never joined by path: the shim needs the host's filesystem. A path
# is only checked. Without an entry the shim stays in the host's mount namespace,
# and so do the hooks it runs (what a hook mounts reaches the host).
NEW_ONLY = ("mount",)


def join_host_namespaces(config: dict[str, Any]) -> None:
    """The shim (the container's pid on the host) joins or makes the ipc, uts and
    cgroup namespaces the config names, and makes a mount namespace if it names a
    new one, so that host-side views of the container match. The guest makes its
    own for the processes inside."""
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        kind = ns.get("type", "")
        if ns.get("path"):
            check_type(ns["path"], kind)
        if kind in NEW_ONLY and not ns.get("path"):
            syscalls.unshare(syscalls.NAMESPACE_FLAGS[kind])
        if kind not in HOST_NAMESPACES:
            continue
        flag = syscalls.NAMESPACE_FLAGS[kind]
        if ns.get("path"):
            try:
                syscalls.setns(ns["path"], flag)
            except OSError as e:
                raise RunvError(f"cannot join {kind} namespace {ns['path']}: {e.strerror}") from None
        else:
            syscalls.unshare(flag)
        if kind == "uts":
            _share_hostname(config, joined=bool(ns.get("path")))


def _share_hostname(config: dict[str, Any], joined: bool) -> None:
    """The host-side UTS namespace carries the container's hostname, as runc's does:
    a new one gets the config's; a container that joins one by path and names no
    hostname of its own takes that namespace's into its VM (a CRI pod's app
    containers join the pause container's UTS namespace, and name none)."""
    import socket

    if not joined and config.get("hostname"):
        socket.sethostname(config["hostname"])
    elif joined and not config.get("hostname"):
        config["hostname"] = socket.gethostname()


def check_type(path: str, kind: str) -> None:
    """`path` must be a namespace of the kind named: a /proc link or a bind mount of one."""
    try:
        flag = syscalls.namespace_type(path)
    except OSError as e:
        if e.errno == errno.ENOTTY:
            raise RunvError(f"namespace path {path} is not a namespace") from None
        raise RunvError(f"namespace path {path}: {e.strerror}") from None
    want = syscalls.NAMESPACE_FLAGS.get(kind)
    if want is not None and flag != want:
        raise RunvError(f"namespace path {path} is not a {kind} namespace")


def join_network_namespace(config: dict[str, Any], state: State) -> bool:
    """Join the network namespace the config names, or make a new one (then True)."""
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") != "network":
            continue
        if ns.get("path"):
            check_type(ns["path"], "network")
            try:
                syscalls.setns(ns["path"], syscalls.CLONE_NEWNET)
            except OSError as e:
                raise RunvError(f"cannot join network namespace {ns['path']}: {e.strerror}") from None
        else:
            syscalls.unshare(syscalls.CLONE_NEWNET)
        state.netns = f"/proc/{os.getpid()}/ns/net"
        state.netns_path = ns.get("path") or ""
        return not ns.get("path")
    return False
