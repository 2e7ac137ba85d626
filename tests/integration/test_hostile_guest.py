"""A guest that floods, and a guest that does not answer (a paused VM), through
the real binary and real VMs: the shim stays small, and kill, exec, ps and
delete --force come back within the shim's request deadline.

A guest that sends bogus frames cannot be made from here: the container cannot
reach the agent's port (it belongs to the agent, PID 1 of the VM), and a test
hook in the production path is not wanted. tests/unit/test_hostile_frames.py
drives the shim's frame handling with such frames instead."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from runv_testlib import leftovers, one_line_error

RSS_LIMIT_KB = 64 * 1024
# Each command must finish well inside this; the shim's own deadline is 10 s.
TIMEOUT = 30


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def run_detached(runv, bundle: str, cid: str, **kw) -> dict:
    r = runv("run", "-d", "--bundle", bundle, cid, detached=True, **kw)
    assert r.returncode == 0, r.stderr
    return runv.state(cid)


def test_output_flood_into_a_reader_that_never_reads(runv, make_bundle):
    bundle = make_bundle(["sh", "-c", "cat /dev/zero & cat /dev/zero >&2"])
    r, w = os.pipe()
    try:
        res = runv("run", "-d", "--bundle", bundle, "flood", stdin=subprocess.DEVNULL,
                   stdout=w, stderr=w, timeout=180)
        assert res.returncode == 0
        pid = runv.state("flood")["pid"]
        samples = []
        for _ in range(20):
            samples.append(rss_kb(pid))
            time.sleep(0.5)
        print(f"shim VmRSS samples (KiB): {samples}")
        assert max(samples) < RSS_LIMIT_KB, samples
        assert runv.state("flood")["status"] == "running"
        assert runv("ps", "flood", timeout=TIMEOUT).returncode == 0  # the shim still serves
        assert runv("delete", "--force", "flood", timeout=TIMEOUT).returncode == 0
    finally:
        os.close(w)
        os.close(r)
        runv("delete", "--force", "flood")
    assert runv("state", "flood").returncode != 0


def test_paused_container_kill_exec_ps_and_delete(runv, make_bundle):
    bundle = make_bundle(["sleep", "300"])
    state = run_detached(runv, bundle, "frozen")
    try:
        assert runv("pause", "frozen").returncode == 0
        err = one_line_error(runv("exec", "frozen", "true", timeout=TIMEOUT))
        assert "paused" in err
        err = one_line_error(runv("ps", "frozen", timeout=TIMEOUT))
        assert "paused" in err
        assert runv("kill", "frozen", "KILL", timeout=TIMEOUT).returncode == 0
        assert runv.state("frozen")["status"] == "stopped"
        assert runv("delete", "frozen", timeout=TIMEOUT).returncode == 0
    finally:
        runv("delete", "--force", "frozen")
    from runv.host import proc
    assert not proc.alive(state["pid"], None)


def test_paused_container_force_delete(runv, make_bundle):
    bundle = make_bundle(["sleep", "300"])
    state = run_detached(runv, bundle, "frozen2")
    assert runv("pause", "frozen2").returncode == 0
    assert runv("delete", "--force", "frozen2", timeout=TIMEOUT).returncode == 0
    assert runv("state", "frozen2").returncode != 0
    from runv.host import proc
    assert not proc.alive(state["pid"], None)
    assert not [x for x in leftovers() if runv.root in x]


def test_signal_to_a_paused_container_arrives_on_resume(runv, make_bundle):
    bundle = make_bundle(["sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done"])
    p = runv.popen("run", "--bundle", bundle, "later", stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            s = runv("state", "later")
            if s.returncode == 0 and json.loads(s.stdout)["status"] == "running":
                break
            time.sleep(0.1)
        time.sleep(0.5)  # the trap is set
        assert runv("pause", "later").returncode == 0
        assert runv("kill", "later", "TERM", timeout=TIMEOUT).returncode == 0
        time.sleep(0.5)
        assert p.poll() is None  # frozen: the signal waits
        assert runv("resume", "later", timeout=TIMEOUT).returncode == 0
        assert p.wait(60) == 7
    finally:
        if p.poll() is None:
            p.kill()
        runv("delete", "--force", "later")


def qemu_pid(runv, cid: str) -> int:
    with open(os.path.join(runv.root, cid, "state.json")) as f:
        return json.load(f)["qemu_pid"]


def test_stuck_vm_requests_fail_and_sigkill_stops_it(runv, make_bundle):
    """QEMU stopped behind the shim's back (SIGSTOP): the agent answers nothing.
    ps and exec fail with the shim's deadline, and KILL stops the VM."""
    bundle = make_bundle(["sleep", "300"])
    run_detached(runv, bundle, "stuck")
    qemu = qemu_pid(runv, "stuck")
    os.kill(qemu, signal.SIGSTOP)
    try:
        err = one_line_error(runv("ps", "stuck", timeout=TIMEOUT))
        assert "did not answer within 10 s" in err
        err = one_line_error(runv("exec", "stuck", "true", timeout=TIMEOUT))
        assert "did not answer within 10 s" in err
        assert runv("kill", "stuck", "KILL", timeout=TIMEOUT).returncode == 0
        assert runv.state("stuck")["status"] == "stopped"
        assert runv("delete", "stuck", timeout=TIMEOUT).returncode == 0
    finally:
        try:
            os.kill(qemu, signal.SIGCONT)
        except ProcessLookupError:
            pass
        runv("delete", "--force", "stuck")
