"""runv events [--stats] [--interval D] ID: the container's statistics as JSON
events, as runc prints them. The numbers are the VM's, seen from the host:
QEMU's CPU time and memory, and the guest's process count; the limits are the
container's (its linux.resources, as `runv update` last set them)."""
from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runv.container import Container


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")
    p.add_argument("--stats", action="store_true", help="print one stats event and exit")
    p.add_argument("--interval", default="5s", help="time between stats events (e.g. 5s, 500ms)")


def run(args: argparse.Namespace) -> int:
    from runv.container import Container
    from runv.errors import InvalidState

    interval = _seconds(args.interval)
    while True:
        c = Container.load(args.root, args.id)
        if c.status.value == "stopped":
            if args.stats:
                raise InvalidState("container not running")
            return 0
        print(json.dumps({"type": "stats", "id": c.id, "data": stats(c)}), flush=True)
        if args.stats:
            return 0
        time.sleep(interval)


def stats(c: Container) -> dict[str, Any]:
    import os

    from runv.container import Container

    pid = c.state.qemu_pid
    if c.state.sandbox:  # a pod's next container: its pod's VM is what it costs the host
        pid = Container.load(c.dir.root, c.state.sandbox).state.qemu_pid
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    user, system = int(fields[11]) / ticks, int(fields[12]) / ticks
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    pids = c.processes()
    out: dict[str, Any] = {
        "cpu": {"usage": {"total": int((user + system) * 1e9), "user": int(user * 1e9),
                          "kernel": int(system * 1e9)}},
        "memory": {"usage": {"usage": rss}},
        "pids": {"current": len(pids)},
    }
    # The container's limits as they are now (create's, then `runv update`'s), as runc reports them.
    res = c.state.resources or {}
    limit = (res.get("memory") or {}).get("limit")
    if isinstance(limit, int) and limit > 0:
        out["memory"]["usage"]["limit"] = limit
    limit = (res.get("pids") or {}).get("limit")
    if isinstance(limit, int) and limit > 0:
        out["pids"]["limit"] = limit
    return out


def _seconds(text: str) -> float:
    from runv.errors import InvalidArgument

    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * scale
    raise InvalidArgument(f"invalid interval {text!r}")
