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


def mem_available_kb() -> int:
    """/proc/meminfo's MemAvailable, in KiB."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


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


def netns_snapshot(ns: str) -> dict[str, str]:
    """A named network namespace as runv must leave it: its links, addresses,
    routes, qdiscs and tc filters (the text of `ip`/`tc`, counters left out)."""
    def run(*argv: str) -> str:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True).stdout

    links = run("ip", "-o", "link", "show")
    names = sorted(line.split()[1].split("@")[0].rstrip(":") for line in links.splitlines())
    snap = {
        "links": " ".join(names),
        "addresses": "\n".join(sorted(" ".join(line.split()[1:4])
                                      for line in run("ip", "-o", "addr", "show").splitlines())),
        "routes": run("ip", "route", "show") + run("ip", "-6", "route", "show"),
        "qdiscs": "\n".join(sorted(line for line in run("tc", "qdisc", "show").splitlines()
                                   if "ingress" in line or "runv" in line)),
    }
    snap["filters"] = "".join(run("tc", "filter", "show", "dev", name, "ingress") for name in names if name != "lo")
    return snap


def leaks(before: dict[str, set[str]], netns: dict[str, dict[str, str]] | None = None,
          markers: list[str] | None = None) -> list[str]:
    """The one leak check of the fault tests and the soak: runv's processes and
    state under every root used, QEMUs, cgroups, mounts, namespaces and links
    new on the host, and each pre-existing namespace back as it was found.
    With `markers` (container ids, roots), only what names one of them counts,
    a QEMU by its cgroup: other tests may run VMs on this host meanwhile."""
    after = host_snapshot()
    found = leftovers()
    for kind in before:
        for item in sorted(after[kind] - before[kind]):
            text = item + (_cgroups_of(item.split("@")[0]) if kind == "qemu" else "")
            if markers is None or any(m in text for m in markers):
                found.append(f"{kind}: {item}")
    for ns, was in (netns or {}).items():
        now = netns_snapshot(ns)
        found += [f"netns {ns} {kind}: {was[kind]!r} -> {now[kind]!r}" for kind in was if now[kind] != was[kind]]
    return found


def _cgroups_of(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return f.read()
    except OSError:
        return ""
