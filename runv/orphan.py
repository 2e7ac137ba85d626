"""`delete --force` of a container whose state.json is missing or cannot be
trusted: find its shim from live facts, stop it with its VM, and remove the
state dir.

The shim is the process listening on the state dir's control socket (its pid
comes from SO_PEERCRED) whose working directory is that state dir; QEMU is its
child. Without the state's record of the cgroup dirs runv made, only the
default cgroup (/runv/<id>) is removed: a cgroupsPath the config named may
have existed before the container.
"""
from __future__ import annotations

import os
import signal
import socket

from runv.host import proc
from runv.state import StateDir


def clean_up(sd: StateDir) -> None:
    shim = _shim_pid(sd.path)
    if shim:
        cgroups = _own_cgroups(shim)
        for pid in [*_children(shim), shim]:
            started = proc.start_time(pid)
            proc.kill(pid, signal.SIGKILL, started)
            proc.wait_gone(pid, started, 5.0)
        _remove_default_cgroups(sd.id, cgroups)
    sd.remove()


def _shim_pid(state_dir: str) -> int | None:
    from runv.sandbox.client import SOCKET

    try:
        dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.settimeout(2.0)
        s.connect(f"/proc/self/fd/{dir_fd}/{SOCKET}")
        pid = int.from_bytes(s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[:4], "little")
    except OSError:
        return None
    finally:
        s.close()
        os.close(dir_fd)
    try:
        if os.readlink(f"/proc/{pid}/cwd") != os.path.realpath(state_dir):
            return None  # not the shim of this state dir
    except OSError:
        return None
    return pid


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _own_cgroups(pid: int) -> list[tuple[str, str]]:
    """(controllers, path) of each hierarchy the process is in."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return [(parts[1], parts[2]) for parts in (line.rstrip("\n").split(":", 2) for line in f)
                    if len(parts) == 3]
    except OSError:
        return []


def _remove_default_cgroups(container_id: str, cgroups: list[tuple[str, str]]) -> None:
    from runv.host.cgroups import DEFAULT_PARENT, Cgroup, hierarchy_dirs

    wanted = f"{DEFAULT_PARENT}/{container_id}"
    dirs = hierarchy_dirs([(c, p) for c, p in cgroups if p == wanted])
    # The killed shim and QEMU may take a moment to leave them.
    Cgroup(dirs).destroy(wait=10.0)
