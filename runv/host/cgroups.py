"""The host cgroup that holds a container's shim and QEMU, with linux.resources
applied: real resource control of the VM.

Works on cgroup v1 controllers mounted under /sys/fs/cgroup (this host's hybrid
layout) and on a pure v2 hierarchy. What the VM is, and so what the limits
bound on the host:

- memory: the guest's RAM is sized from the limit (resources.py), and the
  cgroup's limit gets the VM's own overhead on top (QEMU and the guest kernel),
  or the host would kill QEMU at the first page the container touches past its
  limit;
- pids: QEMU's threads and the shim count; the limit is kept to at least
  MIN_PIDS so that a small container limit cannot starve QEMU of threads;
- devices (v1): only the few devices the shim and QEMU open (VM_DEVICES). The
  container's own rules are not for this cgroup: its processes live in the
  guest, and so do the devices it names;
- cpu, cpuset, blkio, hugetlb, net_cls and net_prio as given.

A relative cgroupsPath lives under /runv, an absolute one is taken as given
(under each hierarchy's mount point), and without one the cgroup is /runv/<id>.
It must name a cgroup below the root (no '..'), and one with no process in it
(as runc refuses a non-empty cgroup): the container gets a cgroup of its own.
`delete` removes only the directories runv made (Cgroup.made, kept in the
state), never a parent or a cgroup that was there before.
"""
from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runv.oci import cgroup_check
from runv.oci.cgroup_check import CgroupError

ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = "/runv"
VM_OVERHEAD = 256 * 2**20  # QEMU's own memory plus the guest kernel's
MIN_PIDS = 64  # the shim and QEMU's threads (vCPUs, I/O workers) must fit
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "hugetlb", "net_cls",
                  "net_prio", "freezer", "devices")
# What the shim, its hooks and QEMU open on the host. QEMU, in its jail
# (runv.qemu.jail), sees only null, zero, urandom and kvm; the shim opens null,
# the tty and a console's pty, tun for the taps; hooks get null and random.
VM_DEVICES = ["c 1:3 rwm", "c 1:5 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
              "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm", "c 10:232 rwm"]


@dataclass
class Cgroup:
    dirs: list[str]  # the cgroup the shim is in, one per hierarchy
    made: list[str] | None = None  # what runv mkdir'ed, parents first (None: state of an older runv)

    def destroy(self, wait: float = 10.0) -> None:
        """Remove the directories runv made, deepest first. Killed processes may
        take a moment to leave the container's own (their threads, freeing guest RAM, may outlive
        the zombie leader: up to `wait` seconds in all);
        a parent that is still busy holds other cgroups and stays."""
        deadline = time.monotonic() + wait
        for d in reversed(self.made) if self.made is not None else self.dirs:
            while True:
                try:
                    os.rmdir(d)
                except OSError as e:
                    if e.errno == errno.EBUSY and d in self.dirs and time.monotonic() < deadline:
                        time.sleep(0.01)
                        continue
                break


NAME_MAX = 255


def cgroup_path(config: dict[str, Any], container_id: str) -> str:
    """The container's cgroup, as an absolute path below the hierarchy's root."""
    linux = config.get("linux") if isinstance(config, dict) else None
    path = linux.get("cgroupsPath") if isinstance(linux, dict) else None
    if path is None or path == "":
        path = f"{DEFAULT_PARENT}/{container_id}"
    if not isinstance(path, str):
        raise CgroupError(f"linux.cgroupsPath: {path!r} is not a string")
    given = path
    if ":" in path and not path.startswith("/"):
        # systemd's slice:prefix:name
        slice_, prefix, name = (path.split(":") + ["", ""])[:3]
        path = f"/{slice_}/{prefix}-{name}.scope" if prefix else f"/{slice_}/{name}"
    path = path if path.startswith("/") else f"{DEFAULT_PARENT}/{path}"
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CgroupError(f"cgroupsPath {given!r} must not contain '..'")
    if not parts:
        raise CgroupError(f"cgroupsPath {given!r} names the root cgroup")
    if "/" + "/".join(parts) == DEFAULT_PARENT:
        raise CgroupError(f"cgroupsPath {given!r} names the parent of all runv containers")
    if any("\0" in p or "\n" in p or len(p.encode(errors="surrogatepass")) > NAME_MAX for p in parts):
        raise CgroupError(f"cgroupsPath {given[:80]!r}: not a valid cgroup name")
    return "/" + "/".join(parts)


def _hierarchies() -> dict[str, str]:
    """Controller name -> mount point ("unified" for the cgroup2 mount)."""
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, opts = fields[sep + 1], fields[sep + 3].split(",")
            if fstype == "cgroup":
                for opt in opts:
                    if opt in V1_CONTROLLERS:
                        out[opt] = fields[4]
            elif fstype == "cgroup2" and fields[4].startswith(ROOT):
                out["unified"] = fields[4]
    return out


def hierarchy_dirs(entries: list[tuple[str, str]]) -> list[str]:
    """The host directories of /proc/PID/cgroup entries (controllers, path)
    in the hierarchies runv uses."""
    mounts = _hierarchies()
    out = set()
    for controllers, path in entries:
        names = controllers.split(",") if controllers else ["unified"]
        mount = next((mounts[n] for n in names if n in mounts), None)
        if mount:
            out.add(os.path.join(mount, path.lstrip("/")))
    return sorted(out)


def _write(directory: str, name: str, value: Any, required: bool = False) -> bool:
    """Write a knob; a knob the kernel lacks is skipped (False) unless required."""
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        if required:
            raise CgroupError(f"cgroup {directory} has no {name}")
        return False
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise CgroupError(f"cgroup {path}: cannot write {value}: {e.strerror}") from None
    return True


def setup(config: dict[str, Any], container_id: str, pid: int) -> Cgroup:
    """Make the cgroup, apply the resources and move `pid` (the shim) in.
    On failure, whatever was made is removed again."""
    linux = config.get("linux")
    res = linux.get("resources") if isinstance(linux, dict) else None
    check(res)
    res = res or {}
    rel = cgroup_path(config, container_id).lstrip("/")
    mounts = _hierarchies()
    v2_only = "unified" in mounts and mounts["unified"] == ROOT
    if res.get("unified") and not v2_only:
        raise CgroupError("linux.resources.unified needs a cgroup v2 host")
    roots = [ROOT] if v2_only else sorted({m for c, m in mounts.items() if c != "unified"})
    for root in roots:
        refuse_unfit(os.path.join(root, rel))
    # /runv/<id> is runv's own name for this container: an empty one there is
    # an earlier container's leftover, and goes with this one.
    own = "/" + rel == f"{DEFAULT_PARENT}/{container_id}"
    dirs: list[str] = []
    made: list[str] = []
    joined: list[str] = []
    try:
        for mount in roots:
            controllers = {c for c, m in mounts.items() if m == mount}
            d = _makedirs_v2(mount, rel, made) if v2_only else _makedirs(mount, rel, "cpuset" in controllers, made)
            if own and d not in made:
                made.append(d)
            dirs.append(d)
            if v2_only:
                _apply_v2(d, res)
            else:
                _apply(d, controllers, res)
        # only once every knob took: a cgroup with a process in it cannot be removed
        for d in dirs:
            _write(d, "cgroup.procs", pid, required=True)
            joined.append(d)
    except BaseException:
        for d in joined:  # back to the hierarchy's root, so that the cgroups can go
            root = d[:len(d) - len(rel)].rstrip("/")
            try:
                _write(root, "cgroup.procs", pid)
            except CgroupError:
                pass
        Cgroup(dirs, made).destroy(wait=0.5)
        raise
    return Cgroup(dirs, made)


def update(dirs: list[str], res: dict[str, Any], memory_floor: int) -> None:
    """`runv update`: the memory, cpu, cpuset, pids and blkio knobs of the
    container's existing cgroup `dirs` from the merged resources `res`.

    The VM's RAM does not shrink with the limit (the guest was booted with it):
    the memory limit the host applies never goes below `memory_floor`, or the
    host would kill QEMU for RAM the guest already holds. Devices, hugetlb and
    the network classes are not touched: they are not updatable, as in runc."""
    check(res)
    host = {key: res[key] for key in ("memory", "cpu", "pids") if isinstance(res.get(key), dict)}
    if isinstance(res.get("blockIO"), dict) and res["blockIO"].get("weight"):
        host["blockIO"] = {"weight": res["blockIO"]["weight"]}
    mem = dict(host.get("memory") or {})
    limit = mem.get("limit")
    if isinstance(limit, int) and limit > 0 and limit < memory_floor:
        mem["limit"] = memory_floor
        swap = mem.get("swap")
        if isinstance(swap, int) and swap > 0:
            mem["swap"] = swap + memory_floor - limit
    host["memory"] = mem
    mounts = _hierarchies()
    v2_only = "unified" in mounts and mounts["unified"] == ROOT
    cpu = host.get("cpu") or {}
    for d in dirs:
        if not os.path.isdir(d):
            raise CgroupError(f"the container's cgroup {d} is gone")
        if v2_only:
            _apply_v2(d, host)
            continue
        controllers = {c for c, m in mounts.items() if c != "unified" and (d + "/").startswith(m + "/")}
        wanted = {"memory", "cpu", "pids", "blkio"} | ({"cpuset"} if cpu.get("cpus") or cpu.get("mems") else set())
        controllers &= wanted
        _apply(d, controllers, host)


def refuse_unfit(d: str) -> None:
    """A cgroup that exists must hold no process and not be frozen (runc 1.1
    warns and 1.2 refuses; runv refuses): its processes would share the VM's
    limits, and be killed, frozen and removed with it."""
    if not os.path.isdir(d):
        return
    pids = _processes(d)
    if pids:
        raise CgroupError(f"container's cgroup is not empty: {len(pids)} process(es) found in {d}")
    for knob, frozen in (("freezer.state", "FROZEN"), ("cgroup.freeze", "1")):
        try:
            with open(os.path.join(d, knob)) as f:
                if f.read().strip() == frozen:
                    raise CgroupError(f"container's cgroup {d} is frozen")
        except OSError:
            pass


def _processes(d: str) -> set[int]:
    """Every process in the cgroup and its descendants."""
    pids: set[int] = set()
    for dirpath, _, files in os.walk(d):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    pids.update(int(p) for p in f.read().split())
            except OSError:
                pass  # removed while we walked
    return pids


def check(res: Any) -> None:
    """linux.resources value by value (runv.oci.cgroup_check: any JSON gives one
    CgroupError), then the huge page sizes against this host's."""
    cgroup_check.check(res)
    for h in (res or {}).get("hugepageLimits") or []:
        size = h["pageSize"]
        if size not in host_page_sizes():
            raise CgroupError(f"hugetlb.{size}: not a huge page size of this host "
                              f"({', '.join(host_page_sizes()) or 'none'})")


def host_page_sizes(base: str = "/sys/kernel/mm/hugepages") -> list[str]:
    """The huge page sizes the kernel has, named as the hugetlb controller names
    them ("2MB", "1GB"), whether or not that controller is mounted."""
    sizes = []
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    for name in names:
        m = re.fullmatch(r"hugepages-([0-9]+)kB", name)
        if m:
            sizes.append(_page_size_name(int(m.group(1)) * 1024))
    return sizes


def _page_size_name(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or size % 1024:
            return f"{size}{unit}"
        size //= 1024
    return f"{size}PB"


# ---- cgroup v1 ----

def _apply(d: str, controllers: set[str], res: dict[str, Any]) -> None:
    if "memory" in controllers:
        _memory_v1(d, res.get("memory") or {})
    if "cpu" in controllers:
        _cpu_v1(d, res.get("cpu") or {})
    if "cpuset" in controllers:
        cpu = res.get("cpu") or {}
        for knob, key in (("cpuset.cpus", "cpus"), ("cpuset.mems", "mems")):
            value = cpu.get(key) or _inherit(os.path.dirname(d), knob)
            _write(d, knob, value)
    if "pids" in controllers:
        limit = (res.get("pids") or {}).get("limit")
        if limit:
            _write(d, "pids.max", max(limit, MIN_PIDS) if limit > 0 else "max")
    if "devices" in controllers:
        _devices_v1(d)
    if "blkio" in controllers:
        _blkio_v1(d, res.get("blockIO") or {})
    if "hugetlb" in controllers:
        for h in res.get("hugepageLimits") or []:
            _write(d, f"hugetlb.{h['pageSize']}.limit_in_bytes", h["limit"], required=True)
    network = res.get("network") or {}
    if "net_cls" in controllers and network.get("classID") is not None:
        _write(d, "net_cls.classid", network["classID"])
    if "net_prio" in controllers:
        for p in network.get("priorities") or []:
            _write(d, "net_prio.ifpriomap", f"{p['name']} {p['priority']}")


def _memory_v1(d: str, mem: dict[str, Any]) -> None:
    def vm(v: Any) -> int | None:
        if not isinstance(v, int) or v == 0:
            return None
        return -1 if v < 0 else v + VM_OVERHEAD

    limit, swap = vm(mem.get("limit")), vm(mem.get("swap"))
    has_memsw = os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes"))
    if limit is not None and swap is not None and has_memsw:
        # memory+swap may never be below memory: raise it first when it grows
        try:
            _write(d, "memory.limit_in_bytes", limit)
            _write(d, "memory.memsw.limit_in_bytes", swap)
        except CgroupError:
            _write(d, "memory.memsw.limit_in_bytes", swap)
            _write(d, "memory.limit_in_bytes", limit)
    elif limit is not None:
        _write(d, "memory.limit_in_bytes", limit)
    elif swap is not None and has_memsw:
        _write(d, "memory.memsw.limit_in_bytes", swap)
    # (without swap accounting there is no memsw knob: the guest has no swap anyway)
    if isinstance(mem.get("reservation"), int) and mem["reservation"] != 0:
        _write(d, "memory.soft_limit_in_bytes", mem["reservation"])
    if isinstance(mem.get("kernelTCP"), int) and mem["kernelTCP"] != 0:
        _write(d, "memory.kmem.tcp.limit_in_bytes", mem["kernelTCP"])
    # memory.kernel: deprecated, and ignored by the kernel since 5.x (as runc 1.1 ignores it)
    sw = mem.get("swappiness")
    if sw is not None and 0 <= sw <= 100:
        _write(d, "memory.swappiness", sw)
    if mem.get("disableOOMKiller"):
        _write(d, "memory.oom_control", 1)


def _cpu_v1(d: str, cpu: dict[str, Any]) -> None:
    if cpu.get("shares"):
        _write(d, "cpu.shares", cpu["shares"])
    period, quota = cpu.get("period"), cpu.get("quota")
    try:  # period first, but a new period may not fit the current quota: then quota first
        if period:
            _write(d, "cpu.cfs_period_us", period)
        if quota:
            _write(d, "cpu.cfs_quota_us", quota)
    except CgroupError:
        if not (period and quota):
            raise
        _write(d, "cpu.cfs_quota_us", quota)
        _write(d, "cpu.cfs_period_us", period)
    if cpu.get("burst") is not None:
        _write(d, "cpu.cfs_burst_us", cpu["burst"], required=True)
    if cpu.get("realtimePeriod"):
        _write(d, "cpu.rt_period_us", cpu["realtimePeriod"], required=True)
    if cpu.get("realtimeRuntime"):
        _write(d, "cpu.rt_runtime_us", cpu["realtimeRuntime"], required=True)
    if cpu.get("idle") is not None:
        _write(d, "cpu.idle", cpu["idle"], required=True)


def device_rule(rule: dict[str, Any]) -> str:
    """An OCI device cgroup rule as devices.allow/deny take it."""
    kind = rule.get("type") or "a"
    if kind == "a":
        return "a"

    def num(v: Any) -> str:
        return "*" if v is None or v < 0 else str(v)

    return f"{kind} {num(rule.get('major'))}:{num(rule.get('minor'))} {rule.get('access') or 'rwm'}"


def _devices_v1(d: str) -> None:
    """Deny all, then what the VM needs."""
    _write(d, "devices.deny", "a", required=True)
    for line in VM_DEVICES:
        _write(d, "devices.allow", line, required=True)


def _blkio_v1(d: str, blk: dict[str, Any]) -> None:
    # blkio.weight exists only with CFQ/BFQ (or as blkio.bfq.weight): without
    # either, the kernel has no weight to set, and that is skipped.
    weight_knob = "blkio.bfq.weight" if os.path.exists(os.path.join(d, "blkio.bfq.weight")) else "blkio.weight"
    if blk.get("weight"):
        _write(d, weight_knob, blk["weight"])
    if blk.get("leafWeight"):
        _write(d, "blkio.leaf_weight", blk["leafWeight"])
    for dev in blk.get("weightDevice") or []:
        if dev.get("weight"):
            _write(d, weight_knob + "_device", f"{dev['major']}:{dev['minor']} {dev['weight']}")
        if dev.get("leafWeight"):
            _write(d, "blkio.leaf_weight_device", f"{dev['major']}:{dev['minor']} {dev['leafWeight']}")
    for key, knob in (("throttleReadBpsDevice", "read_bps_device"), ("throttleWriteBpsDevice", "write_bps_device"),
                      ("throttleReadIOPSDevice", "read_iops_device"),
                      ("throttleWriteIOPSDevice", "write_iops_device")):
        for dev in blk.get(key) or []:
            _write(d, f"blkio.throttle.{knob}", f"{dev['major']}:{dev['minor']} {dev['rate']}", required=True)


def _mkdir_p(root: str, rel: str, made: list[str], before_child: Callable[[str], None] | None = None,
             new: Callable[[str, str], None] | None = None) -> str:
    """mkdir -p below `root`: each directory made goes in `made`, `new(parent,
    d)` runs on it, `before_child(parent)` before each level. A parent that a
    concurrent delete removes under us is made again (a few times)."""
    for attempt in range(3):
        d = root
        try:
            for part in filter(None, rel.split("/")):
                parent, d = d, os.path.join(d, part)
                if before_child:
                    before_child(parent)
                if os.path.isdir(d):
                    continue
                try:
                    os.mkdir(d)
                except FileExistsError:
                    continue  # made by a concurrent create: not ours
                made.append(d)
                if new:
                    new(parent, d)
            return d
        except FileNotFoundError:
            if attempt == 2:
                raise
    return d


def _makedirs(mount: str, rel: str, cpuset: bool, made: list[str]) -> str:
    """mkdir -p; returns the leaf. A new cpuset level takes its parent's cpus
    and mems, or it could hold no task."""
    def inherit(parent: str, d: str) -> None:
        for knob in ("cpuset.cpus", "cpuset.mems"):
            _write(d, knob, _inherit(parent, knob))

    return _mkdir_p(mount, rel, made, new=inherit if cpuset else None)


def _inherit(parent: str, knob: str) -> str:
    """cpuset needs cpus and mems before it takes a task: take the nearest set ones."""
    while parent and parent != "/":
        try:
            with open(os.path.join(parent, knob)) as f:
                value = f.read().strip()
            if value:
                return value
        except OSError:
            pass
        parent = os.path.dirname(parent)
    return ""


# ---- cgroup v2 ----

def _makedirs_v2(root: str, rel: str, made: list[str]) -> str:
    """mkdir -p with every controller enabled on the way down; returns the leaf."""
    def enable(parent: str) -> None:
        try:
            wanted = " ".join("+" + c for c in _controllers(parent))
            if wanted:
                _write(parent, "cgroup.subtree_control", wanted)
        except CgroupError:
            pass  # a controller that cannot be enabled here: its knobs will be missing

    return _mkdir_p(root, rel, made, before_child=enable)


def _controllers(d: str) -> list[str]:
    try:
        with open(os.path.join(d, "cgroup.controllers")) as f:
            return f.read().split()
    except OSError:
        return []


def _apply_v2(d: str, res: dict[str, Any]) -> None:
    mem, cpu = res.get("memory") or {}, res.get("cpu") or {}
    if isinstance(mem.get("limit"), int) and mem["limit"]:
        _write(d, "memory.max", "max" if mem["limit"] < 0 else mem["limit"] + VM_OVERHEAD, required=True)
    if isinstance(mem.get("swap"), int) and mem["swap"]:
        limit = mem.get("limit") or 0
        swap = "max" if mem["swap"] < 0 or limit < 0 else max(mem["swap"] - limit, 0)
        _write(d, "memory.swap.max", swap)
    if isinstance(mem.get("reservation"), int) and mem["reservation"]:
        _write(d, "memory.low", "max" if mem["reservation"] < 0 else mem["reservation"], required=True)
    if cpu.get("shares"):  # runc's conversion of shares (2-262144) to weight (1-10000)
        _write(d, "cpu.weight", 1 + ((cpu["shares"] - 2) * 9999) // 262142, required=True)
    if cpu.get("quota") or cpu.get("period"):
        quota = cpu.get("quota")
        _write(d, "cpu.max", f"{'max' if not quota or quota < 0 else quota} {cpu.get('period') or 100000}",
               required=True)
    if cpu.get("idle") is not None:
        _write(d, "cpu.idle", cpu["idle"], required=True)
    for knob, key in (("cpuset.cpus", "cpus"), ("cpuset.mems", "mems")):
        if cpu.get(key):
            _write(d, knob, cpu[key], required=True)
    limit = (res.get("pids") or {}).get("limit")
    if limit:
        _write(d, "pids.max", max(limit, MIN_PIDS) if limit > 0 else "max", required=True)
    for h in res.get("hugepageLimits") or []:
        _write(d, f"hugetlb.{h['pageSize']}.max", h["limit"], required=True)
    blk = res.get("blockIO") or {}
    if blk.get("weight"):
        _write(d, "io.weight", f"default {1 + ((blk['weight'] - 10) * 9999) // 990}")
    for key, field in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                       ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for dev in blk.get(key) or []:
            _write(d, "io.max", f"{dev['major']}:{dev['minor']} {field}={dev['rate']}", required=True)
    enabled = set(_controllers(d))
    for key, value in (res.get("unified") or {}).items():
        check({"unified": {key: value}})  # (again: no key here may be a path or a core file)
        controller = key.split(".", 1)[0]
        if controller not in enabled:
            raise CgroupError(f"linux.resources.unified: {key!r}: controller {controller!r} is not available")
        _write(d, key, value, required=True)
