"""Guest RAM shared between the VMs of one template (RUNV_TEMPLATES=shared).

A shared template's guest RAM is not in its migration stream: the template
QEMU ran on a memfd mapped shared (`share=on`), saved with QEMU's
`x-ignore-shared`, and that memory is kept in the template directory as the
file `ram`. A VM restored from the template maps the same memory private
(`share=off`): what its guest never writes stays one copy for all of them, and
what it writes is its own (copy-on-write).

QEMU 7.2 opens its RAM file read-write whatever the mapping, and a jailed QEMU
has CAP_DAC_OVERRIDE (for 9p), so no file mode keeps it from writing the file.
So the restored VMs get a sealed memfd instead, a copy of `ram` with
F_SEAL_WRITE, F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_SEAL: the kernel refuses
every write, truncation and hole punch on it, to QEMU and to us alike, while a
private mapping stays writable. One escaped QEMU cannot change what the next
VM restores.

The memfd lives as long as a shim holds it: each shim whose VM maps it keeps
its fd, and records itself under `holders/` in the template directory
(`<pid>.<start time>`, holding the fd's number). A next shim opens the memfd
through /proc/<pid>/fd/<n> of a live holder (the start time rules out a reused
pid; the name, the size and the seals are checked), or, when none is left,
makes a new one from `ram`. Only root reaches the template directory.
"""
from __future__ import annotations

import fcntl
import os

from runv.host import proc

RAM = "ram"
HOLDERS = "holders"
NAME_PREFIX = "runv-ram-"
SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
CHUNK = 1 << 20


def blank(size: int, key: str) -> int:
    """An unsealed memfd of `size` bytes: the RAM a template QEMU runs on (share=on)."""
    fd = os.memfd_create(NAME_PREFIX + key, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
    except OSError:
        os.close(fd)
        raise
    return fd


def save(memfd: int, path: str) -> None:
    """Write the template's RAM to `path`, sparse: only the extents the guest wrote."""
    size = os.fstat(memfd).st_size
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(out, size)
        _copy_extents(memfd, out, size)
        os.fsync(out)
    finally:
        os.close(out)


def obtain(template_dir: str, key: str) -> int:
    """A read-only fd of the sealed memfd holding the template's RAM: a live
    holder's, or a new one made from the file."""
    size = os.stat(os.path.join(template_dir, RAM)).st_size
    fd = _from_holder(template_dir, key, size)
    return fd if fd is not None else _sealed_copy(os.path.join(template_dir, RAM), key, size)


def hold(template_dir: str, fd: int) -> None:
    """Record the calling process (a shim, for as long as its VM runs) as a holder of `fd`."""
    holders = os.path.join(template_dir, HOLDERS)
    try:
        os.makedirs(holders, 0o700, exist_ok=True)
        pid = os.getpid()
        record = os.path.join(holders, f"{pid}.{proc.start_time(pid)}")
        with open(record + ".tmp", "w") as f:
            f.write(str(fd))
        os.rename(record + ".tmp", record)
    except OSError:
        pass  # the next VM makes its own copy: it costs memory, not correctness


def sealed(fd: int, key: str, size: int) -> bool:
    """Is `fd` this template's RAM, sealed for good?"""
    try:
        name = os.readlink(f"/proc/self/fd/{fd}")
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        return (name.startswith(f"/memfd:{NAME_PREFIX}{key} ") and os.fstat(fd).st_size == size
                and seals & SEALS == SEALS)
    except OSError:
        return False


def _from_holder(template_dir: str, key: str, size: int) -> int | None:
    holders = os.path.join(template_dir, HOLDERS)
    try:
        names = os.listdir(holders)
    except OSError:
        return None
    found = None
    for name in names:
        pid_text, _, start = name.partition(".")
        if not (pid_text.isdigit() and start.isdigit()):
            continue
        pid = int(pid_text)
        record = os.path.join(holders, name)
        if proc.start_time(pid) != int(start):
            _unlink(record)  # that shim is gone: every such record goes, not only those before a live one
            continue
        if found is not None:
            continue
        try:
            with open(record) as f:
                n = int(f.read())
            fd = os.open(f"/proc/{pid}/fd/{n}", os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, ValueError):
            continue
        if proc.start_time(pid) == int(start) and sealed(fd, key, size):
            found = fd
        else:
            os.close(fd)
    return found


def _sealed_copy(path: str, key: str, size: int) -> int:
    memfd = blank(size, key)
    try:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _copy_extents(src, memfd, size)
        finally:
            os.close(src)
        fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, SEALS)
    except OSError:
        os.close(memfd)
        raise
    return memfd


def _copy_extents(src: int, dst: int, size: int) -> None:
    """Copy what `src` holds (its data extents, not its holes) to the same offsets in `dst`."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(src, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: nothing but a hole from here
            return
        end = os.lseek(src, start, os.SEEK_HOLE)
        while start < end:
            data = os.pread(src, min(CHUNK, end - start), start)
            if not data:
                return
            os.pwrite(dst, data, start)
            start += len(data)
        offset = end


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
