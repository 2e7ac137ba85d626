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
