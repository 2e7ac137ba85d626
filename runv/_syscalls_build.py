"""Generate runv/_syscalls_cffi.py: cffi's out-of-line ABI mode, so that the shim
loads the declarations ready-made instead of parsing C at every start (30 ms).

    python -m runv._syscalls_build
"""
import os

from cffi import FFI

CDEF = """
    int unshare(int flags);
    int setns(int fd, int nstype);
    int prctl(int option, unsigned long arg2, unsigned long arg3,
              unsigned long arg4, unsigned long arg5);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("_syscalls_cffi", None)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.dirname(os.path.abspath(__file__)))
