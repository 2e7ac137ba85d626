"""The default config.json that `runv spec` writes: the one `runc spec` (runc 1.1) writes,
key for key and in the same order, so `json.dump(..., indent="\\t")` matches runc's file."""
from __future__ import annotations

import os
from typing import Any

OCI_VERSION = "1.0.2-dev"  # what runc 1.1's `runc spec` puts in ociVersion
DEFAULT_CAPABILITIES = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_config(rootless: bool = False) -> dict[str, Any]:
    """A fresh default config (the caller may change it); `rootless` as `runc spec --rootless`."""
    caps = {k: list(DEFAULT_CAPABILITIES) for k in ("bounding", "effective", "permitted", "ambient")}
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": caps,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runv",
        "mounts": [
            _mount("/proc", "proc", "proc"),
            _mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
            _mount("/dev/pts", "devpts", "devpts",
                   "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
            _mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
            _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
            _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
            _mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
    if rootless:
        _to_rootless(config)
    return config


def _mount(destination: str, mtype: str, source: str, *options: str) -> dict[str, Any]:
    m: dict[str, Any] = {"destination": destination, "type": mtype, "source": source}
    if options:
        m["options"] = list(options)
    return m


def _to_rootless(config: dict[str, Any]) -> None:
    """As runc's specconv.ToRootless: a user namespace mapping the caller to root, no
    network namespace, /sys bind-mounted, no uid=/gid= mount options, no cgroup resources."""
    linux = config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] not in ("network", "user")]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    mounts = []
    for m in config["mounts"]:
        if os.path.normpath(m["destination"]) == "/sys":
            m = _mount("/sys", "none", "/sys", "rbind", "nosuid", "noexec", "nodev", "ro")
        elif "options" in m:
            m["options"] = [o for o in m["options"] if not o.startswith(("uid=", "gid="))]
        mounts.append(m)
    config["mounts"] = mounts
    del linux["resources"]
    # runc's Go encoder puts the mappings before the namespaces.
    for key in ("namespaces", "maskedPaths", "readonlyPaths"):
        linux[key] = linux.pop(key)
