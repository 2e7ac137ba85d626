"""A container's live status and OCI state from its state.json, with nothing
but the standard library's lightest modules: `runv state` is called many
times per container, and runv.fast answers it without loading the rest."""
from __future__ import annotations

from runv import OCI_VERSION
from runv.host import proc

STATUSES = ("creating", "created", "running", "paused", "stopped")
# state.json's fields and the JSON types each may hold (runv.state.State mirrors it)
_STR, _INT, _OPT_INT, _DICT = (str,), (int,), (int, type(None)), (dict,)
STATE_FIELDS: dict[str, tuple[type, ...]] = {
    "id": _STR, "bundle": _STR, "status": _STR, "pid": _INT, "pid_start": _OPT_INT,
    "qemu_pid": _INT, "rootfs": _STR, "created": _STR, "annotations": _DICT,
    "exit_code": _OPT_INT, "accel": _STR, "netns": _STR, "hooks": _DICT, "cgroup": _STR,
    "cgroup_made": (list, type(None)), "qemu_start": _OPT_INT, "netns_path": _STR, "taps": _DICT,
    "resources": _DICT, "guest_memory_mb": _INT, "guest_ram_mb": _INT, "shared_ram": (bool,),
    "pod": (bool,), "sandbox": _STR,
}


def well_formed(data: object, container_id: str) -> bool:
    """Whether a parsed state.json is one runv wrote for this id: fields of the
    right types (a bool is no pid), a known status, pids that are pids."""
    if not isinstance(data, dict) or data.get("id") != container_id:
        return False
    for key, types in STATE_FIELDS.items():
        if key in data and (not isinstance(data[key], types) or isinstance(data[key], bool) and bool not in types):
            return False
    if data.get("status", "creating") not in STATUSES:
        return False
    pids = (data.get("pid", 0), data.get("qemu_pid", 0))
    if not all(0 <= p < 2**22 for p in pids):  # the kernel's PID_MAX_LIMIT
        return False
    made = data.get("cgroup_made") or []
    return all(isinstance(d, str) for d in made) and all(
        isinstance(k, str) and isinstance(v, str)
        for field in ("annotations", "taps") for k, v in data.get(field, {}).items())


def live_status(recorded: str, pid: int, pid_start: int | None) -> str:
    """The status recomputed from live facts: a container whose shim is gone is stopped."""
    if recorded == "creating":
        return recorded if not pid or proc.alive(pid, pid_start) else "stopped"
    if recorded != "stopped" and not proc.alive(pid, pid_start):
        return "stopped"
    return recorded


def oci_state(data: dict[str, object]) -> dict[str, object]:
    pid, start = data.get("pid", 0), data.get("pid_start")
    status = live_status(str(data.get("status", "")), pid if isinstance(pid, int) else 0,
                         start if isinstance(start, int) else None)
    return {
        "ociVersion": OCI_VERSION,
        "id": data["id"],
        "pid": pid if status != "stopped" else 0,
        "status": status,
        "bundle": data.get("bundle", ""),
        "rootfs": data.get("rootfs", ""),
        "created": data.get("created", ""),
        "annotations": data.get("annotations") or {},
        "owner": "",
    }
