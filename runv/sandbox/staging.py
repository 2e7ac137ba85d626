"""Stage the VM's 9p exports on the host, so that each shows the guest exactly
what the config binds, and nothing beside it.

QEMU exports whole directories. A bind of one file used to export the file's
parent (all of /etc for /etc/resolv.conf). Instead, every export is a directory
of the container's state dir holding one entry, a bind mount of the source
under its own basename:

    shares/             bound onto itself read-only: the guest creates nothing here
    shares/rootfs       the bundle's rootfs (recursively), exported as it is
    shares/b0/<name>    bind 0's source (a file or a directory), on an empty
                        file or directory of the same type; b0 is exported and
                        the guest binds <share>/<name> (the basename is kept:
                        the mountinfo root names it, as with runc)

The mounts are made in the shim's own mount namespace (`private_namespace`), a
slave of the host's: host mounts made later still reach the shim and QEMU, no
mount of ours reaches the host, and they all go when the shim and QEMU are gone.
The host sees only a skeleton of empty files and directories, which `remove`
deletes without ever descending into a mount.
"""
from __future__ import annotations

import os
import stat

from runv.errors import RunvError
from runv.files import remove_skeleton
from runv.host import syscalls
from runv.oci.mounts import Bind
from runv.qemu.cmdline import Share
from runv.state import SHARES_DIR, SHARES_ROOT

DIRNAME = SHARES_DIR  # in the state dir
ROOT = SHARES_ROOT    # the rootfs's directory in it; the binds' are their tags (b0, b1, ...)

# Per-mount flags a read-only remount must keep (statvfs's ST_* equal the MS_* values).
_KEEP_FLAGS = (syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC | syscalls.MS_NOATIME
               | syscalls.MS_NODIRATIME | syscalls.MS_RELATIME)


_private_ns: str | None = None  # the namespace private_namespace made


def private_namespace() -> None:
    """Move the calling process to a mount namespace of its own, a slave of the host's
    (not private: unmounts on the host, of other containers' rootfs say, must reach it,
    or it would keep them busy)."""
    global _private_ns
    try:
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
    except OSError as e:
        raise RunvError(f"cannot make a mount namespace for the shares: {os.strerror(e.errno or 0)}") from None
    _private_ns = os.readlink("/proc/self/ns/mnt")


def stage(base: str, root_tag: str, rootfs: str, root_readonly: bool, binds: list[Bind]) -> list[Share]:
    """Make `base` (in the state dir) and the mounts under it; the Shares to export,
    the rootfs first. In the namespace of private_namespace only: in the host's,
    the mounts would be the host's, and a recursive delete would go through them."""
    if _private_ns is None or os.readlink("/proc/self/ns/mnt") != _private_ns:
        raise RunvError("internal error: shares staged outside the shim's own mount namespace")
    os.mkdir(base, 0o700)
    root = os.path.join(base, ROOT)
    sources = [_open(rootfs, "root path")]
    try:
        sources += [_open(b.source, "mount source") for b in binds]
        _mountpoint(root, sources[0], rootfs, dir_only=True)
        for b, fd in zip(binds, sources[1:], strict=True):
            os.mkdir(os.path.join(base, b.tag), 0o755)
            _mountpoint(os.path.join(base, b.tag, b.name), fd, b.source)
        _bind(base, base, readonly=True)  # only now: a self-bind does not carry the mounts below
        _bind(_fd_path(sources[0]), root, root_readonly, recursive=True)
        shares = [Share(root_tag, root, root_readonly)]
        for b, fd in zip(binds, sources[1:], strict=True):
            _bind(_fd_path(fd), os.path.join(base, b.tag, b.name), b.readonly, b.recursive)
            shares.append(Share(b.tag, os.path.join(base, b.tag), b.readonly))
    except OSError as e:
        raise RunvError(f"cannot stage the shares in {base}: {os.strerror(e.errno or 0)}") from None
    finally:
        for fd in sources:
            os.close(fd)
    return shares


def _open(path: str, what: str) -> int:
    """The source, opened once: what is bound is what was checked (no swap in between)."""
    try:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as e:
        raise RunvError(f"{what} {path}: {os.strerror(e.errno or 0)}") from None


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _mountpoint(path: str, fd: int, source: str, dir_only: bool = False) -> None:
    """An empty directory for a directory, an empty file for anything else."""
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.mkdir(path, 0o755)
    elif dir_only:
        raise RunvError(f"root path {source}: not a directory")
    else:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))


def _bind(source: str, target: str, readonly: bool, recursive: bool = False) -> None:
    syscalls.mount(source, target, None, syscalls.MS_BIND | (syscalls.MS_REC if recursive else 0))
    if readonly:
        keep = os.statvfs(target).f_flag & _KEEP_FLAGS
        syscalls.mount(None, target, None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY | keep)


def remove(base: str) -> bool:
    """Delete the skeleton `stage` left at `base` (see runv.files.remove_skeleton); True when it is gone."""
    return remove_skeleton(base, opaque=(ROOT,))
