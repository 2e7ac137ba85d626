"""Map the config's mounts onto the VM: host bind sources become 9p shares
(built by QEMU's jail, runv.qemu.jail), the rest are mounted by the agent inside the guest."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from runv.agent.records import MS_RDONLY, parse_mount_options
from runv.errors import SpecError

SHARES_DIR = "/run/shares"  # in the guest, outside the container's root


@dataclass(frozen=True)
class Bind:
    """A bind mount's host source, to export under `tag` as the one entry `name`."""
    tag: str
    source: str
    name: str
    readonly: bool = False
    recursive: bool = False


@dataclass(frozen=True)
class GuestMount:
    """A mount the agent makes in the container, its source rewritten to a guest path."""
    type: str
    source: str
    destination: str
    options: list[str] = field(default_factory=list)


@dataclass
class Plan:
    mounts: list[GuestMount] = field(default_factory=list)
    binds: list[Bind] = field(default_factory=list)
    guest_dirs: list[tuple[str, str]] = field(default_factory=list)  # (tag, guest dir)


def plan(config: dict[str, Any], bundle: str, shares_dir: str = SHARES_DIR) -> Plan:
    """The guest's mounts of `config`; bind sources are exported under
    `shares_dir` (a pod's next containers: their directory of the pod share)."""
    p = Plan()
    for i, m in enumerate(config.get("mounts") or []):
        dest = m.get("destination", "")
        if not dest.startswith("/") or ".." in dest.split("/"):
            raise SpecError(f"mount destination {dest!r} must be an absolute path without '..'")
        mtype = m.get("type") or ""
        options = m.get("options") or []
        source = m.get("source") or mtype
        is_bind = mtype == "bind" or "bind" in options or "rbind" in options
        if is_bind:
            source = _share(p, i, source, bundle, options, "rbind" in options, shares_dir)
            mtype = "bind"
        elif mtype == "cgroup":
            # The guest is cgroup v2 only: give the container its unified hierarchy.
            mtype, source = "cgroup2", "cgroup2"
        p.mounts.append(GuestMount(mtype, source, dest, options))
    return p


def _share(p: Plan, index: int, source: str, bundle: str, options: list[str], recursive: bool,
           shares_dir: str) -> str:
    """Export a bind mount's host source and return its path in the guest: the
    share holds the source alone, under its basename (runv.qemu.jail)."""
    host = source if os.path.isabs(source) else os.path.join(bundle, source)
    if not os.path.exists(host):
        raise SpecError(f"mount source {source}: no such file or directory")
    host = os.path.realpath(host)
    tag = f"b{index}"
    guest_dir = f"{shares_dir}/{tag}"
    readonly = bool(parse_mount_options(options)[0] & MS_RDONLY)
    name = os.path.basename(host) or "_"  # "/" has none
    p.binds.append(Bind(tag, host, name, readonly, recursive))
    p.guest_dirs.append((tag, guest_dir))
    return f"{guest_dir}/{name}"
