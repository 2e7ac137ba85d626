"""A container's live status and OCI state from its state.json, with nothing
but the standard library's lightest modules: `runv state` is called many
times per container, and runv.fast answers it without loading the rest."""
from __future__ import annotations

from runv import OCI_VERSION, proc


def live_status(recorded: str, pid: int, pid_start: int | None) -> str:
    """The status recomputed from live facts: a container whose shim is gone is stopped."""
    if recorded == "creating":
        return recorded if not pid or proc.alive(pid, pid_start) else "stopped"
    if recorded != "stopped" and not proc.alive(pid, pid_start):
        return "stopped"
    return recorded


def oci_state(data: dict) -> dict:
    status = live_status(data.get("status", ""), data.get("pid", 0), data.get("pid_start"))
    return {
        "ociVersion": OCI_VERSION,
        "id": data["id"],
        "pid": data.get("pid", 0) if status != "stopped" else 0,
        "status": status,
        "bundle": data.get("bundle", ""),
        "rootfs": data.get("rootfs", ""),
        "created": data.get("created", ""),
        "annotations": data.get("annotations") or {},
        "owner": "",
    }
