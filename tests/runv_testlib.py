"""Checks shared by the integration tests (a module name of its own, so that
no other conftest.py shadows it)."""
from __future__ import annotations

import os
import subprocess

# Every --root a test used; the leak check looks for processes naming one.
ROOTS: list[str] = []


def leftovers() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(root in cmdline for root in ROOTS):
            found.append(f"process {pid}: {cmdline[:200]}")
    for root in ROOTS:
        if os.path.isdir(root) and os.listdir(root):
            found.append(f"state left in {root}: {os.listdir(root)}")
    return found


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """Check runc's style of failure: non-zero, one `runv: ...` line, no traceback."""
    err = r.stderr.decode()
    assert r.returncode != 0, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("runv: "), err
    return lines[0]


def host_snapshot() -> dict[str, set[str]]:
    """What runv could leave on the host, as a set of names per kind. A jailed
    QEMU's command line names no --root, so QEMUs are found by their binary."""
    snap: dict[str, set[str]] = {"qemu": set(), "cgroups": set(), "mounts": set(), "netns": set(), "links": set()}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[1].split()
        if b"(qemu-system-" in stat and fields[0] != b"Z":  # a zombie holds nothing; reaping it is its parent's job
            snap["qemu"].add(f"{pid}@{fields[19].decode()}")
    for hierarchy in os.listdir("/sys/fs/cgroup"):
        parent = f"/sys/fs/cgroup/{hierarchy}/runv"
        if os.path.isdir(parent) and not os.path.islink(f"/sys/fs/cgroup/{hierarchy}"):
            snap["cgroups"] |= {f"{parent}/{d}" for d in os.listdir(parent) if os.path.isdir(f"{parent}/{d}")}
    with open("/proc/1/mountinfo") as f:  # the host's mount namespace, not a test's
        snap["mounts"] = {line.split()[4] for line in f}
    if os.path.isdir("/run/netns"):
        snap["netns"] = set(os.listdir("/run/netns"))
    snap["links"] = set(os.listdir("/sys/class/net"))
    return snap


def host_changes(before: dict[str, set[str]]) -> list[str]:
    """What appeared on the host since `before` and is still there."""
    after = host_snapshot()
    return [f"{kind}: {sorted(after[kind] - before[kind])}" for kind in before if after[kind] - before[kind]]
