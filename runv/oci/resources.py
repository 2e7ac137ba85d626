"""Size the guest from linux.resources: the memory limit becomes its RAM and the
CPU quota/period its vCPUs.

The VM boots with more RAM than that (`max_memory_mb`: twice it, or what the
annotation MAX_MEMORY_ANNOTATION asks for) and a virtio balloon holding the
rest, so that `runv update` can give the guest more memory without a restart
(QEMU's microvm has no memory hotplug). Pages in the balloon are not the
guest's: the host does not back them."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

DEFAULT_MEMORY_MB = 128
MIN_MEMORY_MB = 64
GUEST_OVERHEAD_MB = 32  # the guest kernel and agent, on top of the container's limit


MAX_MEMORY_ANNOTATION = "io.github.runv.memory.max"  # bytes: the most `runv update` may give the guest
MAX_MEMORY_FACTOR = 2  # without the annotation, the VM's RAM is this times what it boots with
MAX_MEMORY_MB = 1 << 20  # 1 TiB: beyond any -m this runtime would ask QEMU for
POD_MAX_MEMORY_MB = 1024  # a pod's VM: room for its next containers' limits (the balloon holds what they do not ask)


@dataclass(frozen=True)
class GuestSize:
    memory_mb: int  # what the guest has: its RAM less the balloon
    cpus: int
    max_memory_mb: int = 0  # the VM's RAM (0: memory_mb, no room to grow)

    @property
    def ram_mb(self) -> int:
        return max(self.memory_mb, self.max_memory_mb)

    @property
    def balloon_mb(self) -> int:
        """What the balloon leaves the guest at boot: its memory and the page tables of all its RAM."""
        return min(self.ram_mb, self.memory_mb + memmap_mb(self.ram_mb))


def memmap_mb(ram_mb: int) -> int:
    """The guest kernel's struct page for all its RAM (1/64 of it), taken whatever the balloon holds."""
    return math.ceil(ram_mb / 64)


def balloon_target_mb(limit: Any, max_memory_mb: int) -> int:
    """What the guest should have for a container memory limit, within the VM's
    RAM: the limit, the guest's own overhead, and the page tables of all its
    RAM (memmap_mb). Without a limit, all of the VM's RAM."""
    if not isinstance(limit, int) or limit <= 0:
        return max_memory_mb
    wanted = max(MIN_MEMORY_MB, math.ceil(limit / 2**20) + GUEST_OVERHEAD_MB) + memmap_mb(max_memory_mb)
    return min(wanted, max_memory_mb)


def container_memory_max(limit: Any, memory_mb: int) -> int | None:
    """The container's memory.max in the guest, in bytes: its limit, but never
    more than the guest has less its own overhead; without a limit, that. None:
    the guest's memory is not known here (no cap, the limit as it is).

    A guest whose memory runs out as a whole livelocks rather than OOM-kill
    (TCG, no swap, a 9p rootfs): its kernel keeps trying to reclaim what is not
    there. A container held below that in its own cgroup meets the cgroup's
    OOM killer instead, as a runc container meets its limit."""
    given = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None
    if memory_mb <= 0:
        return given
    cap = max(memory_mb - GUEST_OVERHEAD_MB, 1) * 2**20
    return cap if given is None else min(given, cap)


def pod_memory_limit(own: Any, members: list[Any]) -> int:
    """The memory limit a pod's VM is sized for: its first container's and each
    next one's (DEFAULT_MEMORY_MB for one without a limit)."""
    def mb(limit: Any) -> int:
        return math.ceil(limit / 2**20) if isinstance(limit, int) and limit > 0 else DEFAULT_MEMORY_MB
    return (mb(own) + sum(mb(m) for m in members)) * 2**20


def guest_size(config: dict[str, Any], pod: bool = False) -> GuestSize:
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
    return GuestSize(memory, cpus, _max_memory_mb(config, memory, pod))


def _max_memory_mb(config: dict[str, Any], memory: int, pod: bool) -> int:
    from runv.errors import SpecError

    text = (config.get("annotations") or {}).get(MAX_MEMORY_ANNOTATION)
    if text is None:
        return max(memory * MAX_MEMORY_FACTOR, POD_MAX_MEMORY_MB if pod else 0)
    if not (isinstance(text, str) and text.isascii() and text.isdigit() and int(text) <= MAX_MEMORY_MB * 2**20):
        raise SpecError(f"annotation {MAX_MEMORY_ANNOTATION}: {str(text)[:40]!r} is not a number of bytes "
                        f"up to {MAX_MEMORY_MB * 2**20}")
    return max(memory, math.ceil(int(text) / 2**20))


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
