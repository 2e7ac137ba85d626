"""The pod share: how a pod's next containers reach its VM without a new 9p device.

microvm cannot hot-add a device, so a pod's VM exports one more share when it
boots: an empty, read-only tmpfs at /shares/pod in QEMU's own mount namespace
(runv.qemu.jail), mounted by the agent at /run/pod. Each next container of the
pod gets a directory there, named by its init's stream, holding its rootfs and
its bind sources, each bound alone (as the jail binds a VM's own exports):

    /shares/pod/<stream>/rootfs
    /shares/pod/<stream>/b<i>/<name>

The binds are made in QEMU's namespace alone, never in the host's or the
shim's: the container's light shim clones each source's mount tree
(open_tree) where `runv create` was called, whose view of the bundle is the
engine's (containerd's shim mounts the rootfs there), and hands the trees over
as fds; a child of the pod's shim joins QEMU's mount namespace and attaches
them there (move_mount). They go when the container does, or with QEMU. The guest cannot
write in the tmpfs outside the brief moments a container is added or removed,
and everything there is reached through fds without following links, so what
the guest made meanwhile can only make the change fail.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from runv.errors import RunvError
from runv.host import syscalls as sc

TAG = "pod"
JAIL_DIR = "/shares/pod"
GUEST_DIR = "/run/pod"


@dataclass(frozen=True)
class Entry:
    """A detached mount tree (an fd from clone()) to show in a container's
    directory of the pod share at `path`: "rootfs" or "b<i>/<name>"."""
    tree: int
    path: str
    readonly: bool = False


def guest_dir(stream: int) -> str:
    """A container's directory of the pod share, as the guest sees it."""
    return f"{GUEST_DIR}/{stream}"


def clone(source: str, recursive: bool) -> int:
    """A detached copy of the mount tree at `source`, as seen by the caller."""
    try:
        return sc.clone_tree(source, recursive)
    except OSError as err:
        raise RunvError(f"{source}: {os.strerror(err.errno or 0)}") from None


def add(qemu_pid: int, stream: int, entries: list[Entry]) -> None:
    """Attach each entry's tree in the container's directory of the pod share."""
    def work() -> None:
        attr = sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC
        for e in entries:  # whoever cloned them: QEMU never executes or opens devices there
            sc.mount_setattr(e.tree, attr | (sc.MOUNT_ATTR_RDONLY if e.readonly else 0), recursive=True)
        sc.setns(f"/proc/{qemu_pid}/ns/mnt", sc.CLONE_NEWNS)
        with _writable():
            pod = os.open(JAIL_DIR, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            os.mkdir(str(stream), 0o755, dir_fd=pod)  # EEXIST: not ours
            top = _open_dir(pod, str(stream))
            for e in entries:
                sc.move_tree(e.tree, _mount_point(top, e.path, stat.S_ISDIR(os.fstat(e.tree).st_mode)))
    _in_child(work, f"cannot share the container's files with the pod's VM (stream {stream})")


def remove(qemu_pid: int, stream: int) -> None:
    """Detach whatever is bound in the container's directory, then remove it."""
    def work() -> None:
        top = f"{JAIL_DIR}/{stream}"
        points = _mount_points_below(qemu_pid, top)  # the jail has no /proc of its own
        sc.setns(f"/proc/{qemu_pid}/ns/mnt", sc.CLONE_NEWNS)
        for point in sorted(points, key=len, reverse=True):
            sc.umount2(point, sc.MNT_DETACH)
        with _writable():
            _remove_tree(top)
    _in_child(work, f"cannot remove the container's files from the pod's VM (stream {stream})")


class _writable:
    """The pod share's tmpfs writable for a moment (its mount, not those below it)."""
    def __enter__(self) -> None:
        sc.mount_setattr(JAIL_DIR, 0, recursive=False, attr_clr=sc.MOUNT_ATTR_RDONLY)

    def __exit__(self, *exc: object) -> None:
        sc.mount_setattr(JAIL_DIR, sc.MOUNT_ATTR_RDONLY, recursive=False)


def _open_dir(parent: int, name: str) -> int:
    return os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)


def _mount_point(top: int, path: str, directory: bool) -> int:
    """A new, empty file or directory at `path` below `top`, opened; never through a link."""
    *dirs, name = path.split("/")
    parent = top
    for d in dirs:
        os.mkdir(d, 0o755, dir_fd=parent)
        parent = _open_dir(parent, d)
    if directory:
        os.mkdir(name, 0o755, dir_fd=parent)
    else:
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o644, dir_fd=parent))
    return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)


def _mount_points_below(qemu_pid: int, top: str) -> list[str]:
    """QEMU's mount points below `top`, as paths in its jail."""
    with open(f"/proc/{qemu_pid}/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(top + "/")]


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e) or type(e).__name__


def _in_child(work: Callable[[], None], what: str) -> None:
    """Run `work` in a forked child (setns must not touch the shim); its error is ours."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # never returns: nothing of the shim may run twice
        code = 1
        try:
            os.close(r)
            work()
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported to the parent, never a traceback
            os.write(w, _describe(e).encode()[:4000])
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        why = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RunvError(f"{what}: {why or 'the helper died'}")
