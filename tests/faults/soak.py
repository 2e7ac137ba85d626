"""The soak: many create/start/kill/delete cycles in parallel, a SIGKILL injected
at a random phase in one cycle in ten, then one leak check.

    python tests/faults/soak.py [--cycles 1000] [--parallel 8] [--seed N]

`make soak` runs it; tests/faults/test_soak.py runs a short one in `make test`.
Half the workers run their containers in a namespace of their own with a veth
(as docker's or CNI's), the others in a fresh one (restored from templates).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]

from harness import COMMAND, VICTIMS, inject, join_netns, make_netns, remove_netns  # noqa: E402
from mkbundle import make_rootfs  # noqa: E402
from runv_testlib import ROOTS, host_snapshot, leaks, mem_available_kb, netns_snapshot  # noqa: E402

RUNV = os.environ.get("RUNV_BIN") or shutil.which("runv") or os.path.join(os.path.dirname(sys.executable), "runv")
STOP_TIMEOUT = 60.0


@dataclass
class Report:
    cycles: int = 0
    faults: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    mem_before_kb: int = 0
    mem_after_kb: int = 0

    def lines(self) -> list[str]:
        return [f"cycles run: {self.cycles}",
                f"faults injected: {sum(self.faults.values())} "
                f"({', '.join(f'{k} {v}' for k, v in sorted(self.faults.items()))})",
                f"failures: {len(self.failures)}", *(f"  {f}" for f in self.failures[:20]),
                f"leaked: {self.leaked or 'nothing'}",
                f"wall time: {self.wall_s:.1f} s ({self.wall_s / max(self.cycles, 1):.2f} s a cycle)",
                f"MemAvailable: {self.mem_before_kb // 1024} MiB before, {self.mem_after_kb // 1024} MiB after"]


class Soak:
    def __init__(self, root: str, work: str, seed: int) -> None:
        self.root, self.work, self.seed = root, work, seed
        self.env = dict(os.environ)
        self.tag = f"soak{os.getpid()}"
        self.lock = threading.Lock()
        self.report = Report()

    def runv(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Output through files: the shim that create forks keeps create's stdio open."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            r = subprocess.run([RUNV, "--root", self.root, *args], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=err, timeout=timeout, env=self.env)
            out.seek(0)
            err.seek(0)
            r.stdout, r.stderr = out.read(), err.read()
        return r

    def fail(self, cid: str, what: str) -> None:
        with self.lock:
            self.report.failures.append(f"{cid}: {what}")

    def status(self, cid: str) -> str | None:
        r = self.runv("state", cid)
        return json.loads(r.stdout)["status"] if r.returncode == 0 else None

    def cycle(self, n: int, bundle: str) -> None:
        cid = f"{self.tag}-{n}"
        rng = random.Random(self.seed * 1_000_003 + n)
        if n % 10 == rng.randrange(10):
            self.faulty(cid, bundle, rng)
        else:
            self.clean(cid, bundle)
        with self.lock:
            self.report.cycles += 1

    def clean(self, cid: str, bundle: str) -> None:
        for argv in (["create", "--bundle", bundle, cid], ["start", cid], ["kill", cid, "KILL"]):
            r = self.runv(*argv)
            if r.returncode != 0:
                self.fail(cid, f"{argv[0]}: {r.stderr.decode().strip()}")
                self.runv("delete", "--force", cid)
                return
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.status(cid) != "stopped":
            if time.monotonic() > deadline:
                self.fail(cid, f"not stopped {STOP_TIMEOUT:.0f} s after kill")
                break
            time.sleep(0.05)
        r = self.runv("delete", cid)
        if r.returncode != 0:
            self.fail(cid, f"delete: {r.stderr.decode().strip()}")
            self.runv("delete", "--force", cid)

    def faulty(self, cid: str, bundle: str, rng: random.Random) -> None:
        phase = rng.choice(sorted(VICTIMS))
        victim = rng.choice(VICTIMS[phase])
        command = COMMAND.get(phase, "create")
        if command != "create":
            for argv in (["create", "--bundle", bundle, cid], ["start", cid])[:1 if command == "start" else 2]:
                if self.runv(*argv).returncode != 0:
                    self.fail(cid, f"{argv[0]} before the fault failed")
                    self.runv("delete", "--force", cid)
                    return
        argv = {"create": ["create", "--bundle", bundle, cid], "start": ["start", cid],
                "exec": ["exec", cid, "true"], "delete": ["delete", "--force", cid]}[command]
        try:
            inject(RUNV, self.root, self.env, argv, cid, phase, victim)
            with self.lock:
                self.report.faults[f"{phase}/{victim}"] += 1
        except AssertionError as e:  # the phase was not reached: the command failed first
            self.fail(cid, f"{phase}/{victim}: {str(e).strip()[:300]}")
        status = self.status(cid)
        if status not in (None, "creating", "created", "running", "stopped"):
            self.fail(cid, f"state after {phase}/{victim}: {status}")
        r = self.runv("delete", "--force", cid)
        if r.returncode != 0 and b"does not exist" not in r.stderr:
            self.fail(cid, f"delete --force after {phase}/{victim}: {r.stderr.decode().strip()}")
        if self.status(cid) is not None:
            self.fail(cid, f"still there after delete --force ({phase}/{victim})")


def run(cycles: int = 1000, parallel: int = 8, seed: int | None = None) -> Report:
    seed = random.randrange(1 << 30) if seed is None else seed
    work = tempfile.mkdtemp(prefix="runv-soak.")
    root = os.path.join(work, "state")
    ROOTS.append(root)
    soak = Soak(root, work, seed)
    rootfs = os.path.join(work, "rootfs")
    make_rootfs(rootfs)
    namespaces: list[tuple[str, str]] = []
    try:
        return _run(soak, parallel, cycles, root, rootfs, namespaces)
    finally:
        remove_netns(*itertools.chain.from_iterable(namespaces))
        shutil.rmtree(work, ignore_errors=True)


def _run(soak: Soak, parallel: int, cycles: int, root: str, rootfs: str,
         namespaces: list[tuple[str, str]]) -> Report:
    from runv.oci.default_spec import default_config

    bundles = []
    for w in range(parallel):
        config = default_config()
        config["process"].update({"terminal": False, "args": ["sleep", "300"]})
        config["root"]["path"] = rootfs
        if w % 2:
            namespaces.append(make_netns(f"s{os.getpid() % 1000}w{w}"))
            join_netns(namespaces[-1][0])(config)
        bundle = os.path.join(soak.work, f"bundle{w}")
        os.makedirs(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        bundles.append(bundle)
    ns_before = {ct: netns_snapshot(ct) for ct, _ in namespaces}
    before = host_snapshot()
    soak.report.mem_before_kb = mem_available_kb()
    numbers = iter(range(cycles))
    take = threading.Lock()

    def worker(bundle: str) -> None:
        while True:
            with take:
                n = next(numbers, None)
            if n is None:
                return
            try:
                soak.cycle(n, bundle)
            except Exception as e:  # noqa: BLE001 - a hang (timeout) or a bug: count it, go on
                soak.fail(f"{soak.tag}-{n}", f"{type(e).__name__}: {e}")
                soak.runv("delete", "--force", f"{soak.tag}-{n}")

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(b,)) for b in bundles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    soak.report.wall_s = time.monotonic() - t0
    soak.report.leaked = leaks(before, ns_before, [soak.tag, root])
    soak.report.mem_after_kb = mem_available_kb()
    return soak.report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--seed", type=int)
    a = p.parse_args()
    report = run(a.cycles, a.parallel, a.seed)
    print("\n".join(report.lines()))
    return 1 if report.failures or report.leaked else 0


if __name__ == "__main__":
    sys.exit(main())
