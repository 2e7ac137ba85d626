"""Generate runv/host/_syscalls_cffi.py: cffi's out-of-line ABI mode, so that the shim
loads the declarations ready-made instead of parsing C at every start (30 ms).

    python -m runv.host._syscalls_build
"""
import os

from cffi import FFI

CDEF = """
    int unshare(int flags);
    int setns(int fd, int nstype);
    int prctl(int option, unsigned long arg2, unsigned long arg3,
              unsigned long arg4, unsigned long arg5);
    int mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const void *data);
    int umount2(const char *target, int flags);
    int pivot_root(const char *new_root, const char *put_old);

    struct mount_attr {
        uint64_t attr_set;
        uint64_t attr_clr;
        uint64_t propagation;
        uint64_t userns_fd;
    };
    int mount_setattr(int dirfd, const char *path, unsigned int flags,
                      struct mount_attr *attr, size_t size);
    int open_tree(int dfd, const char *filename, unsigned int flags);
    int move_mount(int from_dfd, const char *from_path, int to_dfd, const char *to_path,
                   unsigned int flags);

    struct cap_header { uint32_t version; int pid; };
    struct cap_data { uint32_t effective; uint32_t permitted; uint32_t inheritable; };
    int capget(struct cap_header *header, struct cap_data *data);
    int capset(struct cap_header *header, const struct cap_data *data);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("_syscalls_cffi", None)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.dirname(os.path.abspath(__file__)))
