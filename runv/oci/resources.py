"""Size the guest from linux.resources: the memory limit becomes its RAM and the
CPU quota/period its vCPUs."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

DEFAULT_MEMORY_MB = 128
MIN_MEMORY_MB = 64
GUEST_OVERHEAD_MB = 32  # the guest kernel and agent, on top of the container's limit


@dataclass(frozen=True)
class GuestSize:
    memory_mb: int
    cpus: int


def guest_size(config: dict[str, Any]) -> GuestSize:
    res = (config.get("linux") or {}).get("resources") or {}
    limit = (res.get("memory") or {}).get("limit")
    memory = DEFAULT_MEMORY_MB
    if isinstance(limit, int) and limit > 0:
        memory = max(MIN_MEMORY_MB, math.ceil(limit / 2**20) + GUEST_OVERHEAD_MB)
    cpu = res.get("cpu") or {}
    quota, period = cpu.get("quota"), cpu.get("period")
    cpus = 1
    if isinstance(quota, int) and quota > 0 and isinstance(period, int) and period > 0:
        cpus = max(1, math.ceil(quota / period))
    cpus = min(cpus, os.cpu_count() or 1)
    return GuestSize(memory, cpus)


# What `runv update` may change, as runc's update: section -> fields.
UPDATABLE = {
    "memory": ("limit", "reservation", "swap"),
    "cpu": ("shares", "quota", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems"),
    "pids": ("limit",),
    "blockIO": ("weight",),
}


def merge_update(current: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """linux.resources after `runv update`: `current` with the fields `change`
    sets (the UPDATABLE ones; others, such as devices, are ignored as runc
    ignores them). A memory limit changed alone drags a swap limit that was
    equal to it along (no swap stays no swap, as in runc). Values are not
    checked here: check the result (runv.oci.cgroup_check)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in current.items()}
    for section, fields in UPDATABLE.items():
        given = change.get(section)
        if not isinstance(given, dict):
            continue
        target = out.setdefault(section, {})
        if not isinstance(target, dict):
            target = out[section] = {}
        if section == "memory" and given.get("limit") is not None and given.get("swap") is None \
                and target.get("swap") is not None and target.get("swap") == target.get("limit"):
            target["swap"] = given["limit"]
        for name in fields:
            if given.get(name) is not None:
                target[name] = given[name]
    return out
