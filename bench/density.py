#!/usr/bin/env python3
"""Density: N idle containers (`sleep 3600`, `runv run -d`, one after another,
under a private --root), then what they cost the host while they sit idle.

    bench/density.py [N] [--idle-seconds S] [--execs K] [--templates private,shared]

Each template mode in --templates (private, the default one, and shared:
RUNV_TEMPLATES=shared) is measured in turn, side by side in one run.
Prints the PSS of everything runv runs for a container (the shim's whole process
tree: shim, QEMU, helpers), the drop of MemAvailable per container, the CPU
taken while all idle (the containers' trees, and the whole host, as % of one
core), the start time of the first, median and last, `runv exec` on a few, the
delete time and what was left on the host (must be nothing). Everything is
deleted at the end, on an error or Ctrl-C too. RUNV_BIN picks the runv to run.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import RUNV, pss_kb, timed  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import runv_testlib  # noqa: E402
from mkbundle import make_bundle  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def host_busy_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        cpu = [int(v) for v in f.readline().split()[1:]]
    idle = cpu[3] + cpu[4]  # idle, iowait
    return sum(cpu) - idle, sum(cpu)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([RUNV, *argv], stdin=subprocess.DEVNULL, capture_output=True, check=check)


class Bench:
    def __init__(self, root: str, bundle: str) -> None:
        self.root, self.bundle = root, bundle
        self.ids: list[str] = []
        self.starts: list[float] = []

    def start(self, n: int) -> None:
        for i in range(n):
            cid = f"d{i}"
            self.ids.append(cid)  # before it runs: a failed start is deleted too
            # Not a pipe: the detached container keeps its stdio, and a pipe would never end.
            with tempfile.TemporaryFile() as err:
                t = time.perf_counter()
                r = subprocess.run([RUNV, "--root", self.root, "run", "-d", "--bundle", self.bundle, cid],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
                self.starts.append(time.perf_counter() - t)
                if r.returncode:
                    err.seek(0)
                    raise RuntimeError(f"container {i + 1}: {err.read().decode(errors='replace').strip()}")
            print(f"\rstarted {i + 1}/{n} ({self.starts[-1]:.2f} s)", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)

    def trees(self) -> list[list[int]]:
        out = []
        for cid in self.ids:
            with open(os.path.join(self.root, cid, "state.json")) as f:
                st = json.load(f)
            pids = tree(st["pid"])
            if st.get("qemu_pid") and st["qemu_pid"] not in pids:
                pids += tree(st["qemu_pid"])
            out.append(pids)
        return out

    def delete_all(self) -> list[float]:
        times = []
        for cid in self.ids:
            t = time.perf_counter()
            run("--root", self.root, "delete", "--force", cid, check=False)
            times.append(time.perf_counter() - t)
        self.ids = []
        return times


MODES = {"private": None, "shared": "shared"}  # RUNV_TEMPLATES for each (docs/security.md)


def measure(n: int, idle_seconds: float, nexecs: int, mode: str) -> tuple[list[tuple[str, str]], bool]:
    """The table's rows for N containers in one template mode, and whether anything was left."""
    env = MODES[mode]
    if env:
        os.environ["RUNV_TEMPLATES"] = env
    else:
        os.environ.pop("RUNV_TEMPLATES", None)
    with tempfile.TemporaryDirectory(prefix="runv-density-") as tmp:
        root = os.path.join(tmp, "root")
        runv_testlib.ROOTS.append(root)
        bundle = make_bundle(os.path.join(tmp, "sleeper"), ["sleep", "3600"])
        before = runv_testlib.host_snapshot()
        bench = Bench(root, bundle)
        try:
            avail0 = runv_testlib.mem_available_kb()
            bench.start(n)
            time.sleep(2)  # the last one settles
            trees = bench.trees()
            pss = [sum(pss_kb(p) for p in t) for t in trees]
            drop = (avail0 - runv_testlib.mem_available_kb()) / n

            pids = [p for t in trees for p in t]
            c0, (h0, _) = cpu_ticks(pids), host_busy_ticks()
            time.sleep(idle_seconds)
            c1, (h1, _) = cpu_ticks(pids), host_busy_ticks()
            ours = (c1 - c0) / TICKS / idle_seconds * 100
            host = (h1 - h0) / TICKS / idle_seconds * 100

            picks = sorted({0, n // 2, n - 1})[:nexecs]
            execs = [timed([RUNV, "--root", root, "exec", bench.ids[i], "true"]) for i in picks]
            deletes = bench.delete_all()
        finally:
            bench.delete_all()
        leaks = runv_testlib.leaks(before, markers=[root])

    mib = 1024
    s = bench.starts
    return [
        ("containers", f"{n}"),
        ("PSS per container (shim tree)", f"median {statistics.median(pss) / mib:.1f} MiB, "
                                          f"mean {statistics.mean(pss) / mib:.1f}, max {max(pss) / mib:.1f}"),
        ("MemAvailable drop per container", f"{drop / mib:.1f} MiB"),
        (f"idle CPU, the containers ({idle_seconds:.0f} s)", f"{ours:.1f}% of one core "
                                                             f"({ours / n:.2f}% each)"),
        ("idle CPU, the whole host", f"{host:.1f}% of one core"),
        ("start: first, median, last", f"{s[0]:.2f}, {statistics.median(s):.2f}, {s[-1]:.2f} s "
                                       f"(last/first {s[-1] / s[0]:.2f})"),
        ("exec true: " + ", ".join(f"#{i + 1}" for i in picks), ", ".join(f"{t:.2f}" for t in execs) + " s"),
        ("delete: median, max", f"{statistics.median(deletes):.2f}, {max(deletes):.2f} s"),
        ("leftovers", "; ".join(leaks) or "none"),
    ], bool(leaks)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int, nargs="?", default=10)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--execs", type=int, default=3)
    ap.add_argument("--templates", default="private,shared",
                    help="the template modes to measure, one after the other: private (the default "
                         "runv runs with), shared (RUNV_TEMPLATES=shared)")
    args = ap.parse_args()
    modes = [m for m in args.templates.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--templates: a comma-separated list of {', '.join(MODES)}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # cleaned up as on Ctrl-C

    tables, leaked = [], False
    for mode in modes:
        try:
            rows, leaks = measure(args.n, args.idle_seconds, args.execs, mode)
        except RuntimeError as e:
            print(f"\n{mode}: {e}", file=sys.stderr)
            return 1
        tables.append(rows)
        leaked |= leaks
    width = max(len(k) for k, _ in tables[0])
    print(f"{'templates':{width}}  " + "  |  ".join(f"{m:40}" for m in modes))
    for i, (k, _) in enumerate(tables[0]):
        print(f"{k:{width}}  " + "  |  ".join(f"{t[i][1]:40}" for t in tables))
    return 1 if leaked else 0


if __name__ == "__main__":
    sys.exit(main())
