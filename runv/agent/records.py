"""Turn an OCI config into the agent's CREATE/EXEC records (docs/protocol.md).

Everything that needs parsing happens here, on the host, so that the agent in
the guest only applies ready values (mount flags are parsed the way runc does).
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, TypeGuard

from runv.agent.protocol import MAX_PAYLOAD, Tag, rec_cstrs, rec_i32, rec_str, rec_u32, record
from runv.host import syscalls
from runv.host.syscalls import CLONE_NEWNS, CLONE_NEWUSER

if TYPE_CHECKING:
    from runv.host.network import Nic
    from runv.oci.mounts import GuestMount

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_SYNCHRONOUS, MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC = 0x10, 0x20, 0x40, 0x80
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 0x400, 0x800, 0x1000, 0x4000
MS_SILENT, MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 0x8000, 0x20000, 0x40000, 0x80000, 0x100000
MS_RELATIME, MS_STRICTATIME, MS_LAZYTIME = 0x200000, 0x1000000, 0x2000000

# option -> (clear?, flag), as runc's parseMountOptions
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS), "atime": (True, MS_NOATIME), "bind": (False, MS_BIND),
    "defaults": (False, 0), "dev": (True, MS_NODEV), "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC), "exec": (True, MS_NOEXEC), "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME), "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME), "noexec": (False, MS_NOEXEC),
    "nomand": (True, MS_MANDLOCK), "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME), "nosuid": (False, MS_NOSUID),
    "rbind": (False, MS_BIND | MS_REC), "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT), "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY),
    "silent": (False, MS_SILENT), "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID), "sync": (False, MS_SYNCHRONOUS), "lazytime": (False, MS_LAZYTIME),
    "nolazytime": (True, MS_LAZYTIME), "loud": (True, MS_SILENT),
}
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# The guest makes these; the network namespace stays the VM's own.
NAMESPACE_FLAGS = {k: v for k, v in syscalls.NAMESPACE_FLAGS.items() if k != "network"}


def parse_mount_options(options: list[str]) -> tuple[int, int, str]:
    """(flags, propagation flags, data) from an OCI mount's options."""
    flags = pflags = 0
    data = []
    for opt in options:
        if opt in MOUNT_FLAGS:
            clear, bit = MOUNT_FLAGS[opt]
            flags = flags & ~bit if clear else flags | bit
        elif opt in PROPAGATION:
            pflags |= PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, pflags, ",".join(data)


def mount_record(mtype: str, source: str, dest: str, options: list[str]) -> bytes:
    flags, pflags, data = parse_mount_options(options)
    if mtype == "bind":
        flags |= MS_BIND
    return rec_cstrs(Tag.MOUNT, struct.pack("<II", flags, pflags), mtype, source, dest, data)


def exec_payload(process: dict[str, Any]) -> bytes:
    """EXEC's payload: the process's records, refused if they do not fit one frame."""
    return _fits(process_records(process), "the process")


def create_payload(config: dict[str, Any], mounts: list[GuestMount], shares: list[tuple[str, str]],
                   extra: bytes = b"") -> bytes:
    """CREATE's payload: the config's records (and `extra`), refused if they do not fit one frame.
    A pod's next container (`extra`: its member records) runs in a VM its own
    config did not size: its memory is not capped (that would take a cgroup
    over all of the pod's)."""
    return _fits(create_records(config, mounts, shares, 0 if extra else None) + extra, "the container's config")


def _fits(payload: bytes, what: str) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        from runv.errors import SpecError

        raise SpecError(f"{what} takes {len(payload)} bytes to send to the guest, over the limit of "
                        f"{MAX_PAYLOAD}: its args, env, mounts or other lists are too long")
    return payload


def process_records(process: dict[str, Any]) -> bytes:
    """The records every process has, whether init (CREATE) or exec'd (EXEC)."""
    out = [rec_str(Tag.ARG, a) for a in process.get("args") or []]
    out += [rec_str(Tag.ENV, e) for e in process.get("env") or []]
    out.append(rec_str(Tag.CWD, process.get("cwd") or "/"))
    user = process.get("user") or {}
    out.append(rec_u32(Tag.UID, _u32(user.get("uid", 0), "process.user.uid")))
    out.append(rec_u32(Tag.GID, _u32(user.get("gid", 0), "process.user.gid")))
    out += [rec_u32(Tag.ADDGID, _u32(g, "process.user.additionalGids"))
            for g in user.get("additionalGids") or []]
    if "umask" in user:
        out.append(rec_u32(Tag.UMASK, _u32(user["umask"], "process.user.umask")))
    out.append(rec_u32(Tag.TERMINAL, int(bool(process.get("terminal")))))
    out += [record(Tag.RLIMIT, struct.pack("<IQQ", res, soft, hard))
            for res, soft, hard in rlimits(process.get("rlimits"))]
    from runv.oci.capabilities import masks

    out.append(record(Tag.CAPS, struct.pack("<5Q", *masks(process.get("capabilities")))))
    if process.get("noNewPrivileges"):
        out.append(rec_u32(Tag.NO_NEW_PRIVS, 1))
    if "oomScoreAdj" in process:
        out.append(rec_i32(Tag.OOM_SCORE_ADJ, process["oomScoreAdj"]))
    return b"".join(out)


def _is_u64(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= RLIM_INFINITY


def _u32(value: Any, name: str) -> int:
    """An id the schema let through as a float (0.0 is an "integer" to JSON Schema)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        from runv.errors import SpecError

        raise SpecError(f"config.json: {name} must be an integer 0-4294967295, not {value!r}")
    return value


RLIMITS = ["CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS",
           "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"]


NR_OPEN = 1024 * 1024  # the guest's fs.nr_open: RLIMIT_NOFILE cannot go above it
RLIM_INFINITY = 2**64 - 1


def rlimits(configured: list[dict[str, Any]] | None) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) for the process: the limits runv itself runs with,
    which a runc container inherits from runc's caller, then the config's own.
    Without this, a process would get the guest kernel's boot defaults, which
    are not a host's (RLIMIT_NPROC, for one, scales with the small guest RAM)."""
    import resource

    seen = set()
    out: list[tuple[int, int, int]] = []
    for rl in configured or []:
        soft, hard = rl.get("soft"), rl.get("hard")
        if not (_is_u64(soft) and _is_u64(hard)):
            from runv.errors import SpecError

            raise SpecError(f"rlimit {rl.get('type')!r}: soft and hard must be unsigned 64-bit numbers")
        res = rlimit_number(rl.get("type", ""))
        seen.add(res)
        out.append((res, soft, hard))
    inherited = []
    for res in range(len(RLIMITS)):
        if res in seen:
            continue
        try:
            soft, hard = resource.getrlimit(res)
        except (ValueError, OSError):
            continue
        soft, hard = (RLIM_INFINITY if v == resource.RLIM_INFINITY else v for v in (soft, hard))
        if res == RLIMITS.index("NOFILE"):
            soft, hard = min(soft, NR_OPEN), min(hard, NR_OPEN)
        inherited.append((res, soft, hard))
    return inherited + out


def rlimit_number(name: str) -> int:
    from runv.errors import SpecError

    short = name.upper().removeprefix("RLIMIT_")
    if short not in RLIMITS:
        raise SpecError(f"unknown rlimit {name!r}")
    return RLIMITS.index(short)


def create_records(config: dict[str, Any], mounts: list[GuestMount], shares: list[tuple[str, str]],
                   memory_mb: int | None = None) -> bytes:
    """CREATE's records. `mounts` have their host paths already rewritten to
    guest shares (runv.oci.mounts); `shares` are (9p tag, guest dir) pairs.
    `memory_mb`: what the guest has, as guest_cgroup takes it; None: what the
    config sizes it to (runv.oci.resources.guest_size)."""
    linux = config.get("linux") or {}
    out = [process_records(config["process"])]
    if config.get("hostname"):
        out.append(rec_str(Tag.HOSTNAME, config["hostname"]))
    if config.get("domainname"):
        out.append(rec_str(Tag.DOMAINNAME, config["domainname"]))
    out.append(rec_u32(Tag.ROOT_READONLY, int(bool((config.get("root") or {}).get("readonly")))))
    out += [rec_cstrs(Tag.SHARE, b"", tag, guest_dir) for tag, guest_dir in shares]
    out.append(rec_u32(Tag.NAMESPACES, namespace_flags(linux)))
    out += [mount_record(m.type, m.source, m.destination, m.options) for m in mounts]
    out += [rec_str(Tag.MASKED_PATH, path) for path in linux.get("maskedPaths") or []]
    out += [rec_str(Tag.READONLY_PATH, path) for path in linux.get("readonlyPaths") or []]
    if memory_mb is None:
        from runv.oci.resources import guest_size

        memory_mb = guest_size(config).memory_mb
    capped = memory_mb > 0 and not _given_limit(linux)
    for key, value in guest_sysctls(linux, capped).items():
        out.append(record(Tag.SYSCTL, key.encode() + b"\0" + value.encode()))
    for i, dev in enumerate(linux.get("devices") or []):
        numbers = [dev.get("major", 0), dev.get("minor", 0), dev.get("fileMode", 0o666),
                   dev.get("uid", 0), dev.get("gid", 0)]
        if not all(isinstance(v, int) and 0 <= v < 2**32 for v in numbers):
            from runv.errors import SpecError

            raise SpecError(f"linux.devices[{i}]: major, minor, fileMode, uid and gid must be unsigned 32-bit numbers")
        out.append(record(Tag.DEVICE, struct.pack("<6I", ord(dev["type"][0]), *numbers) + dev["path"].encode()))
    if linux.get("rootfsPropagation") in PROPAGATION:
        out.append(rec_u32(Tag.ROOT_PROPAGATION, PROPAGATION[linux["rootfsPropagation"]]))
    if linux.get("seccomp") is not None:
        from runv.oci.seccomp import compile_profile

        program = compile_profile(linux["seccomp"])
        out.append(record(Tag.SECCOMP, program.filter))
        if program.flags:
            out.append(rec_u32(Tag.SECCOMP_FLAGS, program.flags))
    out += id_map_records(linux)
    out += [rec_cstrs(Tag.CGROUP, b"", knob, value) for knob, value in guest_cgroup(linux, memory_mb)]
    return b"".join(out)


def _given_limit(linux: dict[str, Any]) -> bool:
    limit = ((linux.get("resources") or {}).get("memory") or {}).get("limit")
    return isinstance(limit, int) and not isinstance(limit, bool) and limit > 0


def guest_sysctls(linux: dict[str, Any], capped: bool) -> dict[str, str]:
    """linux.sysctl as the guest applies it. With no memory limit of its own
    the container stands for the whole VM, and the cgroup cap runv puts in its
    place (runv.oci.resources.container_memory_max) is where the VM runs out:
    vm.panic_on_oom=1 (panic on a system-wide OOM) becomes 2 (on a cgroup's
    OOM too), or the kernel would kill in the cgroup rather than panic."""
    out = dict(linux.get("sysctl") or {})
    for key in ("vm.panic_on_oom", "vm/panic_on_oom"):
        if capped and isinstance(out.get(key), str) and out[key].strip() == "1":
            out[key] = "2"
    return out


def guest_cgroup(linux: dict[str, Any], memory_mb: int = 0) -> list[tuple[str, str]]:
    """linux.resources as knobs of the container's cgroup inside the guest
    (cgroup v2): what bounds the container's own processes, where the host
    cgroup (runv.host.cgroups) bounds the whole VM. cpusets and hugetlb stay on the
    host: the guest has its own CPU numbering and no huge pages. `memory_mb`:
    what the guest has (runv.oci.resources.GuestSize.memory_mb), which caps
    memory.max, with or without a limit; 0 when not known (the limit as given)."""
    from runv.oci.resources import container_memory_max

    res = linux.get("resources") or {}
    mem, cpu, pids = res.get("memory") or {}, res.get("cpu") or {}, res.get("pids") or {}
    out = []
    limit = pids.get("limit")
    if isinstance(limit, int) and limit:
        out.append(("pids.max", str(limit) if limit > 0 else "max"))
    limit = mem.get("limit")
    cap = container_memory_max(limit, memory_mb)
    if cap is not None:
        out.append(("memory.max", str(cap)))
    elif isinstance(limit, int) and limit < 0:
        out.append(("memory.max", "max"))
    low = mem.get("reservation")
    if isinstance(low, int) and low:
        out.append(("memory.low", str(low) if low > 0 else "max"))
    shares = cpu.get("shares")
    if isinstance(shares, int) and shares > 0:  # runc's conversion of shares to weight
        out.append(("cpu.weight", str(1 + ((min(max(shares, 2), 262144) - 2) * 9999) // 262142)))
    quota, period = cpu.get("quota"), cpu.get("period")
    if isinstance(quota, int) and quota or isinstance(period, int) and period:  # -1: back to "max"
        q = quota if isinstance(quota, int) and quota > 0 else "max"
        out.append(("cpu.max", f"{q} {period if isinstance(period, int) and period > 0 else 100000}"))
    return out


def update_payload(resources: dict[str, Any], memory_mb: int = 0) -> bytes:
    """UPDATE's payload: the container's guest cgroup knobs for `resources`;
    `memory_mb` as for guest_cgroup (what the guest has after the update)."""
    knobs = guest_cgroup({"resources": resources}, memory_mb)
    return _fits(b"".join(rec_cstrs(Tag.CGROUP, b"", knob, value) for knob, value in knobs), "the update")


def id_map_records(linux: dict[str, Any]) -> list[bytes]:
    """UID_MAP and GID_MAP for a new user namespace. Without one the maps mean
    nothing; with one and no maps, runc refuses the config, and so does runv."""
    from runv.errors import SpecError

    if not namespace_flags(linux) & CLONE_NEWUSER:
        return []
    out = []
    for key, tag in (("uidMappings", Tag.UID_MAP), ("gidMappings", Tag.GID_MAP)):
        maps = linux.get(key) or []
        if not maps:
            raise SpecError(f"a user namespace needs linux.{key}")
        if len(maps) > 340:  # the kernel's limit per map
            raise SpecError(f"linux.{key}: at most 340 ranges")
        value = b""
        for m in maps:
            fields = [m.get(k) for k in ("containerID", "hostID", "size")]
            if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32 for v in fields) \
                    or not fields[2]:
                raise SpecError(f"linux.{key}: {m!r} is not a valid range")
            value += struct.pack("<3I", *fields)
        out.append(record(tag, value))
    return out


def namespace_flags(linux: dict[str, Any]) -> int:
    """Clone flags for the namespaces the guest creates; a mount namespace always,
    so that the agent keeps its own view. Network stays the VM's (one NIC set)."""
    flags = CLONE_NEWNS
    for ns in linux.get("namespaces") or []:
        if not ns.get("path"):
            flags |= NAMESPACE_FLAGS.get(ns.get("type", ""), 0)
    return flags


__all__ = ["create_records", "member_records", "rec_u32",
           "process_records", "create_payload", "exec_payload", "mount_record", "parse_mount_options",
           "namespace_flags", "id_map_records", "guest_cgroup", "update_payload", "rlimits", "record", "rec_i32"]


def pod_cgroup_records(memory_mb: int) -> bytes:
    """POD_CGROUP: the cap of a pod's next containers together, below what the
    guest has by the guest's own and as much again: the kernel of a pod's VM
    holds more (each container's page tables, stacks, 9p state) than one
    container's guest, and a guest that runs out as a whole livelocks."""
    from runv.oci.resources import GUEST_OVERHEAD_MB, container_memory_max

    cap = container_memory_max(None, memory_mb - GUEST_OVERHEAD_MB) if memory_mb > GUEST_OVERHEAD_MB else None
    return rec_cstrs(Tag.POD_CGROUP, b"", "memory.max", str(cap)) if cap else b""


def member_records(linux: dict[str, Any], root_dir: str) -> bytes:
    """CREATE's extra records for a pod's next container: its root on the pod
    share, and the namespaces it names by path, which in the guest are those
    of the pod's first container (the pod's; network is the VM's anyway)."""
    join = 0
    for ns in linux.get("namespaces") or []:
        if ns.get("path"):
            join |= NAMESPACE_FLAGS.get(ns.get("type", ""), 0) & ~CLONE_NEWNS
    return rec_str(Tag.ROOT_DIR, root_dir) + rec_u32(Tag.JOIN_NAMESPACES, join)


def netif_records(nic: Nic, index: int = 0) -> bytes:
    """NETIF's records: guest NIC `index` takes the veth's name, MAC, MTU, addresses and routes."""
    import ipaddress

    from runv.qemu.cmdline import probe_mac

    out = [rec_str(Tag.NET_NAME, nic.ifname),
           record(Tag.NET_MAC, bytes.fromhex(nic.mac.replace(":", ""))),
           record(Tag.NET_PROBE_MAC, bytes.fromhex(probe_mac(index).replace(":", ""))),
           rec_u32(Tag.NET_MTU, nic.mtu)]
    for a in nic.addresses:
        out.append(record(Tag.NET_ADDR, struct.pack("<II", a.family, a.prefixlen)
                          + ipaddress.ip_address(a.address).packed))
    for r in nic.routes:
        gateway = ipaddress.ip_address(r.gateway).packed if r.gateway else b""
        out.append(record(Tag.NET_ROUTE, struct.pack("<II", r.family, r.prefixlen)
                          + ipaddress.ip_address(r.dst).packed + gateway))
    return b"".join(out)
