"""QEMU's jail, after Firecracker's jailer, adapted to a QEMU that serves 9p.

`vm.launch` runs `Jail.enter` in the child between fork and exec. In order:

1. a mount namespace of its own, every mount in it private;
2. a small tmpfs on <state dir>/jail (an empty directory on the host: the
   tmpfs exists only in QEMU's namespace) holding only what QEMU opens:
   - its binary, ELF interpreter and libraries, its modules and its firmware,
     read-only, at their host paths (the only mounts that may execute);
   - the guest's kernel and initramfs, read-only, at /vm/;
   - each 9p share at /shares/<tag>: the rootfs bound there itself; a bind's
     source bound alone on an empty file or directory /shares/<tag>/<entry>,
     so that the export, a directory of the read-only tmpfs, shows the source
     and nothing beside it (the guest can create nothing there either).
     Read-only where the share is, and nosuid, nodev and noexec on it and on
     every mount below it: a device node the guest makes over 9p (QEMU mknods
     as root) can never be opened by QEMU. These mounts exist in QEMU's
     namespace alone: the host's and the shim's never have them, and they go
     with QEMU. The namespace is a copy of the shim's made after the prestart
     hooks, so what a hook mounted in a source is exported too;
   - a pod's VM: its pod share, a small read-only tmpfs of its own at
     /shares/pod, which the shim fills as the pod's next containers come
     (runv.qemu.podshare);
   - /dev/null, /dev/zero, /dev/urandom, and /dev/kvm under KVM;
   - /proc/self/fd, its own fd directory alone: the 9p server chmods and
     reaches xattrs through /proc/self/fd/N (QEMU 7.2, hw/9pfs/9p-local.c);
   no other /proc, no /sys, no /etc. The template QEMU restores from, and its logs, the
   agent port, QMP and the taps, come as fds;
   each source is opened (O_PATH) once and bound from its fd, on a mount point
   of the type found;
3. pivot_root into it, the old root detached, the new root read-only;
4. rlimits: no core dumps (a core is the guest's memory), a modest fd count;
   no transparent huge pages (RAM the guest never touched stays unallocated);
5. the capability bounding set cut to KEEP_CAPS, the inheritable and ambient
   sets emptied, and no_new_privs. For uid 0, exec makes the permitted and
   effective sets the bounding set, so QEMU runs with KEEP_CAPS alone.
"""
from __future__ import annotations

import dataclasses
import errno
import functools
import os
import resource
import signal
import stat
import struct
import subprocess
from dataclasses import dataclass, field

from runv.host import syscalls as sc
from runv.qemu.cmdline import Machine, Share

VM_DIR = "/vm"
SHARES_DIR = "/shares"
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom")
# The pod share holds only mount points: a guest that writes there while the
# shim adds a container fills at most this.
SCRATCH_OPTIONS = "mode=0755,size=256k,nr_inodes=4096"
KVM = "/dev/kvm"

# What QEMU's 9p server needs to keep the guest's files as the guest made them
# (security_model=none: QEMU is the files' owner): chown and chmod them, read
# and write whatever their mode, keep set-id bits. Not MKNOD: QEMU 7.2's 9p
# server removes every device node it makes anyway (its chmod of the new node
# fails, ENXIO), so without it the guest gets EPERM instead and no node ever
# appears on the host. Not DAC_READ_SEARCH (open_by_handle_at reaches outside
# any mount), not SETUID/SETGID (the 9p server never switches ids), not SETFCAP
# (file capabilities a guest would set on a host file), not SYS_ADMIN or
# NET_ADMIN (the taps come as fds).
CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID = 0, 1, 3, 4
KEEP_CAPS = frozenset({CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID})

# 9p opens an fd per file the guest holds open and reclaims them past a third
# of this; the agent port, QMP, the logs and the taps are a handful more.
NOFILE = 4096


@dataclass(frozen=True)
class Bind:
    source: str             # a host path
    target: str             # its absolute path in the jail
    directory: bool | None  # what the source must be; None: either (a bind's entry)
    readonly: bool = True
    executable: bool = False
    device: bool = False    # a device node: the one kind of mount without nodev
    recursive: bool = False  # the mounts below the source too

    def attributes(self) -> int:
        attr = sc.MOUNT_ATTR_NOSUID
        attr |= 0 if self.device else sc.MOUNT_ATTR_NODEV
        attr |= 0 if self.executable else sc.MOUNT_ATTR_NOEXEC
        attr |= sc.MOUNT_ATTR_RDONLY if self.readonly else 0
        return attr


@dataclass
class Jail:
    root: str                       # the host directory the jail's tmpfs goes on
    binds: list[Bind] = field(default_factory=list)
    scratch: list[str] = field(default_factory=list)  # small read-only tmpfs mounts (the pod share)
    env: dict[str, str] = field(default_factory=dict)
    last_cap: int = 40

    def enter(self) -> None:
        """In the child, before exec. Any failure is written to stderr (QEMU's log)."""
        try:
            sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
            self.build()
            _limit_resources()
            _drop_privileges(self.last_cap)
        except OSError as e:
            os.write(2, f"cannot jail qemu: {e}\n".encode())
            raise

    def build(self) -> None:
        """Steps 1 to 3: the calling process ends in the jail's root, alone in its
        mount namespace."""
        _own_mount_namespace()
        _mount_root(self.root)
        for b in self.binds:
            _bind(self.root, b)
        for target in self.scratch:
            os.makedirs(self.root + target, 0o755, exist_ok=True)
            flags = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
            sc.mount("runv-pod", self.root + target, "tmpfs", flags, SCRATCH_OPTIONS)
            # read-only as a mount, not as a filesystem: the shim makes it writable for a moment
            sc.mount(None, self.root + target, None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | flags)
        _bind(self.root, own_fds())
        _pivot(self.root)


def for_machine(machine: Machine, root: str) -> tuple[Jail, Machine]:
    """The jail for this machine, and the machine as QEMU sees it from inside."""
    runtime = _runtime(machine.qemu)
    binds = list(runtime.binds)
    binds += [Bind(p, p, directory=False, readonly=False, device=True) for p in DEVICES]
    if machine.accel == "kvm":
        binds.append(Bind(KVM, KVM, directory=False, readonly=False, device=True))
    kernel, initrd = f"{VM_DIR}/kernel", f"{VM_DIR}/initrd"
    binds += [Bind(machine.kernel, kernel, directory=False), Bind(machine.initrd, initrd, directory=False)]
    devices, scratch = [], []
    for dev in machine.devices:
        if isinstance(dev, Share):
            if dev.pod:
                scratch.append(f"{SHARES_DIR}/{dev.tag}")
            else:
                binds.append(share_bind(dev))
            dev = dataclasses.replace(dev, path=f"{SHARES_DIR}/{dev.tag}", entry="")
        devices.append(dev)
    jailed = dataclasses.replace(machine, qemu=runtime.qemu, kernel=kernel, initrd=initrd, devices=devices)
    return Jail(root, binds, scratch, {"LD_LIBRARY_PATH": runtime.library_path}, _last_cap()), jailed


def share_bind(share: Share) -> Bind:
    """A share's mount in the jail: the directory itself at /shares/<tag>, or its
    entry alone in it, at /shares/<tag>/<entry>."""
    export = f"{SHARES_DIR}/{share.tag}"
    if not share.entry:
        return Bind(share.path, export, directory=True, readonly=share.readonly, recursive=share.recursive)
    return Bind(share.path, f"{export}/{share.entry}", directory=None, readonly=share.readonly,
                recursive=share.recursive)


# --- what QEMU needs to run ------------------------------------------------------

@dataclass(frozen=True)
class Runtime:
    qemu: str                 # the binary's real path (its path in the jail too)
    binds: tuple[Bind, ...]
    library_path: str         # the libraries' directories (there is no ld.so.cache in the jail)


@functools.lru_cache(maxsize=4)
def _runtime(qemu: str) -> Runtime:
    exe = os.path.realpath(qemu)
    binds = [Bind(exe, exe, directory=False, executable=True)]
    libs = _libraries(exe)
    binds += [Bind(p, p, directory=False, executable=True) for p in libs]
    # QEMU finds its modules and firmware next to its binary, <prefix>/bin/..
    prefix = os.path.dirname(os.path.dirname(exe))
    for d in _module_dirs(prefix):
        binds.append(Bind(d, d, directory=True, executable=True))
    firmware = os.path.join(prefix, "share", "qemu")
    if os.path.isdir(firmware):
        binds.append(Bind(firmware, firmware, directory=True))
    dirs = sorted({os.path.dirname(p) for p in libs})
    return Runtime(exe, tuple(binds), ":".join(dirs))


def _module_dirs(prefix: str) -> list[str]:
    out = []
    for lib in ("lib", "lib64"):
        base = os.path.join(prefix, lib)
        candidates = [os.path.join(base, "qemu")]
        try:
            candidates += [os.path.join(base, d, "qemu") for d in os.listdir(base) if d.endswith("-gnu")]
        except OSError:
            continue
        out += [d for d in candidates if _holds_modules(d)]
    return out


def _holds_modules(d: str) -> bool:
    """A directory of QEMU modules (not <prefix>/lib/qemu's helper programs)."""
    try:
        return any(name.endswith(".so") for name in os.listdir(d))
    except OSError:
        return False


def _libraries(exe: str) -> list[str]:
    """The ELF interpreter and every library the binary loads, as the loader finds
    them, plus libgcc_s (glibc loads it to unwind a cancelled thread)."""
    interp = _interpreter(exe)
    if not interp:
        return []  # a static binary
    r = subprocess.run([interp, "--list", exe], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise OSError(f"{interp} --list {exe}: {r.stderr.strip() or f'exit status {r.returncode}'}")
    out = r.stdout
    libs = [interp]
    for line in out.splitlines():
        line = line.strip()
        path = line.split("=>", 1)[1] if "=>" in line else line
        path = path.rsplit(" (", 1)[0].strip()
        if path.startswith("/") and path not in libs:
            libs.append(path)
    libc = next((p for p in libs if os.path.basename(p).startswith("libc.so")), None)
    if libc:
        gcc_s = os.path.join(os.path.dirname(libc), "libgcc_s.so.1")
        if os.path.exists(gcc_s) and gcc_s not in libs:
            libs.append(gcc_s)
    return libs


def _interpreter(exe: str) -> str:
    """PT_INTERP of a 64-bit little-endian ELF file ("" for none)."""
    with open(exe, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            raise OSError(f"{exe} is not an ELF executable (QEMU runs jailed, where a script has no interpreter)")
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, _, p_offset, _, _, p_filesz = struct.unpack("<IIQQQQ", f.read(40))
            if p_type == 3:  # PT_INTERP
                f.seek(p_offset)
                return f.read(p_filesz).rstrip(b"\0").decode()
    return ""


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


# --- the steps, in the child -------------------------------------------------------

def own_fds() -> Bind:
    """This process's fd directory as /proc/self/fd: the same process after exec."""
    return Bind(f"/proc/{os.getpid()}/fd", "/proc/self/fd", directory=True)


def _own_mount_namespace() -> None:
    sc.unshare(sc.CLONE_NEWNS)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)


def _mount_root(root: str) -> None:
    sc.mount("runv-jail", root, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
             "mode=0755,size=64k")


def _bind(root: str, b: Bind) -> None:
    """Bind the source, opened once, on a mount point of its type: a swap of the
    path after the check cannot change what is bound."""
    target = root + b.target
    fd = os.open(b.source, os.O_PATH | os.O_CLOEXEC)
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        if b.directory is not None and is_dir != b.directory:
            code = errno.ENOTDIR if b.directory else errno.EISDIR
            raise OSError(code, os.strerror(code), b.source)
        if is_dir:
            os.makedirs(target, 0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        sc.mount(f"/proc/self/fd/{fd}", target, None, sc.MS_BIND | (sc.MS_REC if b.recursive else 0))
    finally:
        os.close(fd)
    try:
        sc.mount_setattr(target, b.attributes(), b.recursive)
    except OSError as e:
        if e.errno != 38:  # ENOSYS: before Linux 5.12, remount (the top mount only)
            raise
        flags = sc.MS_NOSUID | (0 if b.device else sc.MS_NODEV) | (0 if b.executable else sc.MS_NOEXEC)
        flags |= sc.MS_RDONLY if b.readonly else 0
        sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | flags)


def _pivot(root: str) -> None:
    """pivot_root(".", ".") stacks the old root on the new one; detaching it
    leaves the jail alone (pivot_root(2))."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")
    sc.mount(None, "/", None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV
             | sc.MS_NOEXEC)


def _limit_resources() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # QEMU asks for huge pages on guest RAM: a guest touching one 4 KiB page
    # would then cost the host 2 MiB. Kept across exec.
    sc.prctl(sc.PR_SET_THP_DISABLE, 1)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def _drop_privileges(last_cap: int) -> None:
    for cap in range(last_cap + 1):
        if cap not in KEEP_CAPS:
            sc.prctl(sc.PR_CAPBSET_DROP, cap)
    sc.clear_inheritable_capabilities()
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
