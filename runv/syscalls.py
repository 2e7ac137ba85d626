"""The few Linux calls Python 3.11's standard library lacks, through cffi (ABI mode)."""
from __future__ import annotations

import os

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_lib = None


def _libc():
    global _lib
    if _lib is None:
        from cffi import FFI

        ffi = FFI()
        ffi.cdef("""
            int unshare(int flags);
            int setns(int fd, int nstype);
            int prctl(int option, unsigned long arg2, unsigned long arg3,
                      unsigned long arg4, unsigned long arg5);
        """)
        _lib = (ffi, ffi.dlopen(None))
    return _lib


def _check(rc: int, what: str) -> None:
    if rc != 0:
        ffi, _ = _libc()
        err = ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc()[1].unshare(flags), "unshare")


def setns(path: str, nstype: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc()[1].setns(fd, nstype), f"setns {path}")
    finally:
        os.close(fd)


def prctl(option: int, arg: int) -> None:
    _check(_libc()[1].prctl(option, arg, 0, 0, 0), "prctl")
