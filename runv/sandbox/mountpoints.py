"""Mount points made in a read-only rootfs before it is exported, as runc makes them.

The guest's agent creates each mount's destination in the container's root
before mounting on it; but a read-only root is exported read-only (the guest
cannot write the host's rootfs), so there it cannot. containerd's CRI plugin
asks for a read-only root for every pod's pause container, with /dev/shm and a
file bind on /etc/resolv.conf, and a pause image holds little more than its
program: runc creates the missing mount points in the rootfs on the host before
it makes the root read-only. So does `make()`, for a read-only root only.

It never follows a symlink: the walk opens each component relative to its
parent with O_NOFOLLOW, and stops at a symlink (or anything not a directory)
without creating anything; the guest then resolves that path inside the root,
as before, and fails if it must. A destination under an earlier mount's is
left alone: it lives in that mount (/dev/shm in /dev's tmpfs), not the rootfs.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MountPoint:
    destination: str
    directory: bool


def needed(mounts: list[dict[str, Any]]) -> list[MountPoint]:
    """The mount points of a config's mounts that lie in the rootfs itself."""
    out: list[MountPoint] = []
    earlier: list[str] = []
    for m in mounts:
        dest = os.path.normpath("/" + (m.get("destination") or "")).lstrip("/")
        if dest and not any(dest.startswith(e + "/") for e in earlier):
            out.append(MountPoint(dest, _is_dir_source(m)))
        if dest:
            earlier.append(dest)
    return out


def _is_dir_source(m: dict[str, Any]) -> bool:
    options = m.get("options") or []
    if m.get("type") != "bind" and "bind" not in options and "rbind" not in options:
        return True
    try:
        return stat.S_ISDIR(os.stat(m.get("source") or "").st_mode)
    except OSError:
        return True   # a missing source fails later with its own error


def make(rootfs: str, mounts: list[dict[str, Any]]) -> None:
    """Create the missing mount points of `mounts` in rootfs (best effort)."""
    for mp in needed(mounts):
        _make_one(rootfs, mp)


def _make_one(rootfs: str, mp: MountPoint) -> None:
    parts = mp.destination.split("/")
    fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            if last and not mp.directory:
                try:
                    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     0o644, dir_fd=fd))
                except OSError:
                    pass   # already there (a file, or something the guest will judge)
                return
            try:
                os.mkdir(name, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError:
                return
            try:
                nxt = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    return   # a symlink or a file: not ours to follow
                raise
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
