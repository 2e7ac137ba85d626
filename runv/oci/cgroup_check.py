"""linux.resources checked value by value before any of it reaches a cgroup
file, a file name or the guest: runv writes the cgroups before the schema
check has finished (it runs while the VM boots), so this check must take any
JSON and answer with one CgroupError, never another exception.

Beyond the schema's types and integer widths, values that no kernel interface
takes are errors, as in runc (swappiness over 100, memory+swap below memory),
and nothing may smuggle a second value or a path into a knob (a newline in a
CPU list, a '/' in a unified key or an interface name).
"""
from __future__ import annotations

import re
from typing import Any

from runv.errors import RunvError

INT64 = (-2**63, 2**63 - 1)
UINT64 = (0, 2**64 - 1)
UINT32 = (0, 2**32 - 1)
BLKIO_WEIGHT = (0, 1000)  # 10 to 1000 is what blkio.weight and io.weight take; 0 is "unset" (docker sends it)
SWAPPINESS = (-1, 2**64 - 1)  # -1 and 2^64-1 mean "unset" to engines
PAGE_SIZE = re.compile(r"[1-9][0-9]*[KMGTP]?B")
CPU_LIST = re.compile(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*")
IFNAME = re.compile(r"[^\s/:\0]{1,15}")  # IFNAMSIZ - 1, none of what the kernel refuses
UNIFIED_KEY = re.compile(r"([a-z_]+)\.[A-Za-z0-9_.]+")
# Files of the cgroup core, not of a controller: cgroup.procs would move any host
# process into the VM's cgroup, cgroup.subtree_control reshapes the hierarchy.
UNIFIED_FORBIDDEN_CONTROLLERS = {"cgroup"}

# section -> field -> range of the integer it must be
NUMBERS: dict[str, dict[str, tuple[int, int]]] = {
    "memory": {"limit": INT64, "reservation": INT64, "swap": INT64, "kernel": INT64,
               "kernelTCP": INT64, "swappiness": SWAPPINESS},
    "cpu": {"shares": UINT64, "quota": INT64, "burst": UINT64, "period": UINT64,
            "realtimeRuntime": INT64, "realtimePeriod": UINT64, "idle": INT64},
    "blockIO": {"weight": BLKIO_WEIGHT, "leafWeight": BLKIO_WEIGHT},
    "network": {"classID": UINT32},
    "pids": {"limit": INT64},
}
BOOLEANS = {"memory": ("disableOOMKiller", "useHierarchy", "checkBeforeUpdate")}
THROTTLES = ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
             "throttleWriteIOPSDevice")


class CgroupError(RunvError):
    pass


def check(res: Any) -> None:
    """Raise CgroupError naming the first bad value of linux.resources."""
    if res is None:
        return
    where = "linux.resources"
    _object(res, where)
    for section, fields in NUMBERS.items():
        obj = _object(res.get(section), f"{where}.{section}")
        for name, limits in fields.items():
            _integer(obj.get(name), f"{where}.{section}.{name}", limits)
        for name in BOOLEANS.get(section, ()):
            if obj.get(name) is not None and not isinstance(obj[name], bool):
                raise _bad(f"{where}.{section}.{name}", obj[name], "is not a boolean")
    _memory(res.get("memory") or {}, f"{where}.memory")
    cpu = res.get("cpu") or {}
    for name in ("cpus", "mems"):
        value = cpu.get(name)
        if value is not None and not (isinstance(value, str) and (value == "" or CPU_LIST.fullmatch(value))):
            raise _bad(f"{where}.cpu.{name}", value, "is not a CPU list such as '0-3,7'")
    _block_io(res.get("blockIO") or {}, f"{where}.blockIO")
    for i, h in enumerate(_array(res.get("hugepageLimits"), f"{where}.hugepageLimits")):
        at = f"{where}.hugepageLimits[{i}]"
        h = _object(h, at, required=True)
        if not (isinstance(h.get("pageSize"), str) and PAGE_SIZE.fullmatch(h["pageSize"])):
            raise _bad(f"{at}.pageSize", h.get("pageSize"), "is not a hugepage size such as '2MB'")
        _integer(h.get("limit"), f"{at}.limit", UINT64, required=True)
    for i, p in enumerate(_array((res.get("network") or {}).get("priorities"), f"{where}.network.priorities")):
        at = f"{where}.network.priorities[{i}]"
        p = _object(p, at, required=True)
        if not (isinstance(p.get("name"), str) and IFNAME.fullmatch(p["name"])):
            raise _bad(f"{at}.name", p.get("name"), "is not a network interface name")
        _integer(p.get("priority"), f"{at}.priority", UINT32, required=True)
    _devices(res.get("devices"), f"{where}.devices")
    pids = res.get("pids")
    if pids is not None and pids.get("limit") is None:
        raise CgroupError(f"{where}.pids: limit is required")
    _unified(res.get("unified"), f"{where}.unified")


def _memory(mem: dict[str, Any], where: str) -> None:
    sw = mem.get("swappiness")
    if sw is not None and sw not in (-1, 2**64 - 1) and not 0 <= sw <= 100:
        raise CgroupError(f"invalid memory swappiness {sw}: the range is 0-100")
    limit, swap = mem.get("limit"), mem.get("swap")
    if limit is not None and swap is not None and limit > 0 and 0 < swap < limit:
        raise CgroupError(f"memory+swap limit {swap} is smaller than the memory limit {limit}")


def _block_io(blk: dict[str, Any], where: str) -> None:
    for name in ("weight", "leafWeight"):
        _weight(blk.get(name), f"{where}.{name}")
    for i, dev in enumerate(_array(blk.get("weightDevice"), f"{where}.weightDevice")):
        at = f"{where}.weightDevice[{i}]"
        dev = _device_numbers(dev, at)
        for name in ("weight", "leafWeight"):
            _weight(dev.get(name), f"{at}.{name}")
    for key in THROTTLES:
        for i, dev in enumerate(_array(blk.get(key), f"{where}.{key}")):
            at = f"{where}.{key}[{i}]"
            dev = _device_numbers(dev, at)
            _integer(dev.get("rate"), f"{at}.rate", UINT64, required=True)


def _weight(value: Any, where: str) -> None:
    _integer(value, where, BLKIO_WEIGHT)
    if value and value < 10:
        raise _bad(where, value, "is out of range (10 to 1000, or 0 for none)")


def _device_numbers(dev: Any, where: str) -> dict[str, Any]:
    checked = _object(dev, where, required=True)
    for name in ("major", "minor"):
        _integer(checked.get(name), f"{where}.{name}", UINT32, required=True)
    return checked


def _devices(rules: Any, where: str) -> None:
    for i, rule in enumerate(_array(rules, where)):
        at = f"{where}[{i}]"
        rule = _object(rule, at, required=True)
        if not isinstance(rule.get("allow"), bool):
            raise _bad(f"{at}.allow", rule.get("allow"), "is not a boolean")
        for name in ("major", "minor"):
            _integer(rule.get(name), f"{at}.{name}", INT64)
        access = rule.get("access")
        if rule.get("type", "a") not in ("a", "b", "c") or access is not None and not (
                isinstance(access, str) and set(access) <= set("rwm")):
            raise CgroupError(f"invalid device cgroup rule {rule!r}")


def _unified(unified: Any, where: str) -> None:
    """Only a controller's own knobs: no cgroup.* core file, no path."""
    for key, value in _object(unified, where).items():
        match = UNIFIED_KEY.fullmatch(key)
        if not match or ".." in key:
            raise CgroupError(f"{where}: bad key {key!r}: must be CONTROLLER.KNOB")
        if match.group(1) in UNIFIED_FORBIDDEN_CONTROLLERS:
            raise CgroupError(f"{where}: {key!r} is not a resource runv lets a config write")
        if not isinstance(value, str) or "\0" in value:
            raise _bad(f"{where}.{key}", value, "is not a string")


# ---- the JSON shapes ----

def _object(value: Any, where: str, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise _bad(where, value, "is not an object")
    return dict(value)


def _array(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(where, value, "is not an array")
    return value


def _integer(value: Any, where: str, limits: tuple[int, int], required: bool = False) -> None:
    if value is None:
        if required:
            raise CgroupError(f"{where} is required")
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(where, value, "is not an integer")
    low, high = limits
    if not low <= value <= high:
        raise _bad(where, value, f"is out of range ({low} to {high})")


def _bad(where: str, value: Any, what: str) -> CgroupError:
    text = repr(value)
    return CgroupError(f"{where}: {text[:60] + '...' if len(text) > 60 else text} {what}")
