#!/usr/bin/env python3
"""runv's benchmarks, measured side by side in one run.

- the floor: a bare QEMU boot of the same kernel and initramfs to its init
  (the agent answers `runv.probe=1` by rebooting at once);
- `runv run` of /bin/true from a busybox bundle, against `runc run` and `crun run`
  of the same bundle;
- the wall time of `runv state` against `runc state`;
- the host memory (PSS) of one idle container: its shim plus its QEMU.

    bench/run.py [--runs N] [--no-docker]

and `docker run --rm busybox true` with runv against runc, on containerd and
dockerd started for the run (the engine tests' fixtures).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))

from mkbundle import make_bundle  # noqa: E402

RUNV = os.environ.get("RUNV_BIN") or shutil.which("runv") or os.path.join(os.path.dirname(sys.executable), "runv")


def timed(argv: list[str], **kw) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


def median_of(runs: int, fn) -> float:
    return statistics.median(fn(i) for i in range(runs))


def floor_boot(rootfs: str):
    """The bare boot of the same VM (kernel, initramfs, devices) to its init, which
    reboots at once (`runv.probe=1`): what QEMU and the guest kernel cost."""
    import socket

    from runv.agent.protocol import PORT_NAME, SHARE_ROOT_TAG
    from runv.qemu import assets
    from runv.qemu.accel import choose
    from runv.qemu.cmdline import KERNEL_ARGS, Console, Machine, SerialPort, Share

    a = assets.require()

    def one(i: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            host, guest = socket.socketpair()
            m = Machine(a.qemu, a.kernel, a.initrd, accel=choose(a).accel,
                        kernel_args=KERNEL_ARGS + " runv.probe=1",
                        devices=[Console(os.path.join(tmp, "console.log")),
                                 SerialPort(PORT_NAME, guest.fileno()),
                                 Share(SHARE_ROOT_TAG, rootfs, readonly=True)])
            try:
                return timed(m.argv(), pass_fds=(guest.fileno(),))
            finally:
                host.close()
                guest.close()
    return one


def runtime_run(runtime: str, root: str, bundle: str):
    def one(i: int) -> float:
        return timed([runtime, "--root", root, "run", "--bundle", bundle, f"bench-{i}"])
    return one


def why_not(runtime: str, root: str, bundle: str) -> str:
    r = subprocess.run([runtime, "--root", root, "run", "--bundle", bundle, "bench-why"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True)
    subprocess.run([runtime, "--root", root, "delete", "--force", "bench-why"], capture_output=True)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else f"exit status {r.returncode}"


def _interpreter(launcher: str) -> str:
    """The Python that a launcher script (#!... -S) runs, or this one."""
    try:
        with open(launcher, "rb") as f:
            first = f.readline().decode()
        if first.startswith("#!"):
            return first[2:].split()[0]
    except (OSError, UnicodeDecodeError):
        pass
    return sys.executable


def runtime_state(runtime: str, root: str, cid: str):
    def one(i: int) -> float:
        return timed([runtime, "--root", root, "state", cid])
    return one


def pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def idle_memory(root: str, bundle: str) -> tuple[int, int]:
    cid = "bench-idle"
    subprocess.run([RUNV, "--root", root, "run", "-d", "--bundle", bundle, cid], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        time.sleep(2)
        with open(os.path.join(root, cid, "state.json")) as f:
            st = json.load(f)
        return pss_kb(st["pid"]), pss_kb(st["qemu_pid"])
    finally:
        subprocess.run([RUNV, "--root", root, "delete", "--force", cid])


def docker_ratio(runs: int) -> tuple[float, float]:
    """`docker run --rm busybox true` with runv and with runc, on daemons started here."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "engines"))
    import daemons

    daemons.ensure_packages()
    with tempfile.TemporaryDirectory(prefix="runv-bench-engines-") as work:
        d = daemons.Daemons(workdir=work, runv=daemons.find_runv())
        try:
            d.start()
            d.load_images()

            def one(runtime):
                def run(i: int) -> float:
                    t = time.perf_counter()
                    d.docker("run", "--rm", "--runtime", runtime, daemons.IMAGE, "true", check=True)
                    return time.perf_counter() - t
                return run
            return median_of(runs, one("runv")), median_of(runs, one("runc"))
        finally:
            d.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-docker", action="store_true", help="skip `docker run --rm` (it starts dockerd)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="runv-bench-") as tmp:
        bundle = make_bundle(os.path.join(tmp, "bundle"), ["/bin/true"])
        sleeper = make_bundle(os.path.join(tmp, "sleeper"), ["sleep", "600"])
        roots = {rt: os.path.join(tmp, f"root-{rt}") for rt in ("runv", "runc", "crun")}
        floor = median_of(args.runs, floor_boot(os.path.join(bundle, "rootfs")))
        results = {"floor (bare QEMU boot)": floor}
        results["runv run true"] = median_of(args.runs, runtime_run(RUNV, roots["runv"], bundle))
        os.environ["RUNV_TEMPLATES"] = "shared"  # its template is made by the first run, as above
        try:
            results["runv run true, shared RAM"] = median_of(args.runs, runtime_run(RUNV, roots["runv"], bundle))
        finally:
            del os.environ["RUNV_TEMPLATES"]
        skipped = {}
        for rt in ("runc", "crun"):
            if not shutil.which(rt):
                skipped[rt] = "not installed"
                continue
            try:
                results[f"{rt} run true"] = median_of(args.runs, runtime_run(rt, roots[rt], bundle))
            except subprocess.CalledProcessError:
                # crun refuses a hybrid cgroup layout with controllers missing from v1.
                skipped[rt] = "cannot run a container on this host: " + why_not(rt, roots[rt], bundle)

        # `state` on a live container, for runv and runc
        subprocess.run([RUNV, "--root", roots["runv"], "run", "-d", "--bundle", sleeper, "st"],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        subprocess.run(["runc", "--root", roots["runc"], "run", "-d", "--bundle", sleeper, "st"],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            runv_state = median_of(20, runtime_state(RUNV, roots["runv"], "st"))
            runc_state = median_of(20, runtime_state("runc", roots["runc"], "st"))
            # the floor of any Python CLI: the interpreter that runs runv, started bare
            python_floor = median_of(20, lambda i: timed([_interpreter(RUNV), "-S", "-c", "pass"]))
        finally:
            subprocess.run([RUNV, "--root", roots["runv"], "delete", "--force", "st"])
            subprocess.run(["runc", "--root", roots["runc"], "delete", "--force", "st"])
        shim_kb, qemu_kb = idle_memory(roots["runv"], sleeper)
        docker = None if args.no_docker else docker_ratio(args.runs)

    runv_t = results["runv run true"]
    print(f"{'measure':32} {'median (s)':>10}")
    for name, value in results.items():
        print(f"{name:32} {value:10.3f}")
    print(f"{'runv state':32} {runv_state:10.4f}")
    print(f"{'runc state':32} {runc_state:10.4f}")
    print(f"{'python3 -S -c pass':32} {python_floor:10.4f}")
    print()
    shared_t = results["runv run true, shared RAM"]
    print(f"runv / floor:          {runv_t / floor:6.2f}  (goal 0.3; RUNV_TEMPLATES=shared: {shared_t / floor:.2f})")
    if "runc run true" in results:
        print(f"runv / runc:           {runv_t / results['runc run true']:6.2f}")
    for rt, why in skipped.items():
        print(f"runv / {rt}:           not measured ({rt} {why})")
    if "crun run true" in results:
        print(f"runv / crun:           {runv_t / results['crun run true']:6.2f}")
    # runv state is answered by the C launcher (launcher/runv.c), not Python, when it can be
    print(f"runv state / runc state: {runv_state / runc_state:4.2f}  (target < 2; Python's own start alone "
          f"would be {python_floor / runc_state:.2f} of runc state)")
    print(f"idle container PSS:    shim {shim_kb / 1024:.1f} MiB + QEMU {qemu_kb / 1024:.1f} MiB "
          f"= {(shim_kb + qemu_kb) / 1024:.1f} MiB")
    if docker:
        print(f"docker run --rm true:  runv {docker[0]:.3f} s, runc {docker[1]:.3f} s, "
              f"ratio {docker[0] / docker[1]:.2f}")


if __name__ == "__main__":
    main()
