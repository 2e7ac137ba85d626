"""The host cgroup that holds a container's shim and QEMU, with linux.resources
applied: real resource control of the VM.

Works on cgroup v1 controllers mounted under /sys/fs/cgroup (this host's hybrid
layout) and on a pure v2 hierarchy. The memory limit gets the VM's own
overhead on top (QEMU and the guest kernel), or the host would kill QEMU at the
first page the container touches past its limit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from runv.errors import RunvError

ROOT = "/sys/fs/cgroup"
VM_OVERHEAD = 256 * 2**20  # QEMU's own memory plus the guest kernel's


class CgroupError(RunvError):
    pass


@dataclass
class Cgroup:
    dirs: list[str]

    def destroy(self) -> None:
        """Remove the directories; killed processes may take a moment to leave."""
        import errno
        import time

        for d in self.dirs:
            for _ in range(100):
                try:
                    os.rmdir(d)
                except OSError as e:
                    if e.errno == errno.EBUSY:
                        time.sleep(0.01)
                        continue
                break


def cgroup_path(config: dict[str, Any], container_id: str) -> str:
    path = (config.get("linux") or {}).get("cgroupsPath") or f"/runv/{container_id}"
    if ":" in path and not path.startswith("/"):
        # systemd's slice:prefix:name
        slice_, prefix, name = (path.split(":") + ["", ""])[:3]
        path = f"/{slice_}/{prefix}-{name}.scope" if prefix else f"/{slice_}/{name}"
    return path if path.startswith("/") else f"/runv/{path}"


def _hierarchies() -> dict[str, str]:
    """Controller name -> mount point."""
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, opts = fields[sep + 1], fields[sep + 3].split(",")
            if fstype == "cgroup":
                for opt in opts:
                    if opt in ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio",
                               "hugetlb", "net_cls", "net_prio", "freezer", "devices"):
                        out[opt] = fields[4]
            elif fstype == "cgroup2" and fields[4] == ROOT:
                out["unified"] = fields[4]
    return out


def _write(directory: str, name: str, value: Any, required: bool = False) -> None:
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        if required:
            raise CgroupError(f"cgroup {directory} has no {name}")
        return  # this kernel has no such knob (e.g. blkio.weight without BFQ)
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise CgroupError(f"cgroup {path}: cannot write {value}: {e.strerror}") from None


def setup(config: dict[str, Any], container_id: str, pid: int) -> Cgroup:
    """Make the cgroup, apply the resources and move `pid` (the shim) in."""
    res = (config.get("linux") or {}).get("resources") or {}
    rel = cgroup_path(config, container_id).lstrip("/")
    mounts = _hierarchies()
    dirs: list[str] = []
    for mount in sorted(set(mounts.values())):
        if mount.endswith("systemd") or (mounts.get("unified") == mount and len(mounts) > 1):
            continue
        d = os.path.join(mount, rel)
        controllers = {c for c, m in mounts.items() if m == mount}
        _makedirs(mount, rel, "cpuset" in controllers)
        dirs.append(d)
        try:
            _apply(d, controllers, res)
            _write(d, "cgroup.procs", pid)
        except CgroupError:
            Cgroup(dirs).destroy()
            raise
    return Cgroup(dirs)


def _apply(d: str, controllers: set[str], res: dict[str, Any]) -> None:
    mem, cpu, pids = res.get("memory") or {}, res.get("cpu") or {}, res.get("pids") or {}
    if "memory" in controllers:
        if mem.get("limit", 0) > 0:
            _write(d, "memory.limit_in_bytes", mem["limit"] + VM_OVERHEAD)
        if mem.get("reservation", 0) > 0:
            _write(d, "memory.soft_limit_in_bytes", mem["reservation"])
        if mem.get("swap", 0) > 0:
            _write(d, "memory.memsw.limit_in_bytes", mem["swap"] + VM_OVERHEAD)
        if mem.get("swappiness") is not None and mem["swappiness"] <= 100:
            _write(d, "memory.swappiness", mem["swappiness"])
    if "cpu" in controllers:
        for key, knob in (("shares", "cpu.shares"), ("period", "cpu.cfs_period_us"),
                          ("quota", "cpu.cfs_quota_us"), ("realtimePeriod", "cpu.rt_period_us"),
                          ("realtimeRuntime", "cpu.rt_runtime_us")):
            if cpu.get(key):
                _write(d, knob, cpu[key])
    if "cpuset" in controllers:
        parent = os.path.dirname(d)
        for knob, key in (("cpuset.cpus", "cpus"), ("cpuset.mems", "mems")):
            value = cpu.get(key) or _inherit(d, parent, knob)
            _write(d, knob, value)
    if "pids" in controllers and pids.get("limit"):
        _write(d, "pids.max", pids["limit"] if pids["limit"] > 0 else "max")
    if "blkio" in controllers and (res.get("blockIO") or {}).get("weight"):
        _write(d, "blkio.weight", res["blockIO"]["weight"])
    if "hugetlb" in controllers:
        for h in res.get("hugepageLimits") or []:
            _write(d, f"hugetlb.{h['pageSize']}.limit_in_bytes", h["limit"], required=True)
    network = res.get("network") or {}
    if "net_cls" in controllers and network.get("classID") is not None:
        _write(d, "net_cls.classid", network["classID"])
    if "net_prio" in controllers:
        for p in network.get("priorities") or []:
            _write(d, "net_prio.ifpriomap", f"{p['name']} {p['priority']}")


def _makedirs(mount: str, rel: str, cpuset: bool) -> None:
    """mkdir -p; a new cpuset level takes its parent's cpus and mems, or it
    could hold no task."""
    d = mount
    for part in filter(None, rel.split("/")):
        parent, d = d, os.path.join(d, part)
        if not os.path.isdir(d):
            os.mkdir(d)
            if cpuset:
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    _write(d, knob, _inherit(d, parent, knob))


def _inherit(d: str, parent: str, knob: str) -> str:
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
