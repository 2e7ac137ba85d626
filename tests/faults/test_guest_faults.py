"""A guest that runs out of memory, forks without end or panics its kernel ends
as a stopped container with an exit status; nothing is left on the host."""
from __future__ import annotations

import json
import time

import pytest
from runv_testlib import host_snapshot, leaks

STOP_TIMEOUT = 120.0


def wait_stopped(runv, cid: str, timeout: float = STOP_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = runv.state(cid)
        if state["status"] == "stopped":
            return state
        time.sleep(0.2)
    raise AssertionError(f"{cid} not stopped within {timeout} s")


def exit_code(runv, cid: str) -> int | None:
    with open(f"{runv.root}/{cid}/state.json") as f:
        return json.load(f)["exit_code"]


def sysctl(values):
    def edit(config):
        config["linux"]["sysctl"] = values
    return edit


EAT_MEMORY = ["sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done"]


@pytest.mark.xfail(run=False, reason="the guest livelocks short of memory instead of OOM-killing: "
                   "the container keeps running (the agent could give the container's guest cgroup "
                   "a memory.max below the VM's RAM)")
@pytest.mark.parametrize("panic", [False, True], ids=["oom-killer", "panic-on-oom"])
def test_memory_exhausted_ends_on_its_own(panic, runv, make_bundle):
    """The OOM killer ends it, or with vm.panic_on_oom the guest kernel panics,
    QEMU exits and the container is stopped with 255 (overcommit on, so that it
    is the OOM killer, not malloc, that says no)."""
    before = host_snapshot()
    cid = f"oom{int(panic)}"
    values = {"vm.overcommit_memory": "1", **({"vm.panic_on_oom": "1"} if panic else {})}
    runv("run", "-d", "--bundle", make_bundle(EAT_MEMORY, config_edit=sysctl(values)), cid,
         check=True, detached=True)
    try:
        wait_stopped(runv, cid)
        code = exit_code(runv, cid)
        assert code == 255 if panic else code not in (None, 0), code
    finally:
        runv("delete", "--force", cid)
    assert leaks(before, markers=[cid, runv.root]) == []


def test_memory_exhausted_is_killed(runv, make_bundle):
    """A guest with no memory left still stops on SIGKILL (the shim stops the VM
    when the agent cannot deliver it in time), and delete removes it all."""
    before = host_snapshot()
    values = {"vm.overcommit_memory": "1"}
    runv("run", "-d", "--bundle", make_bundle(EAT_MEMORY, config_edit=sysctl(values)), "oomkill",
         check=True, detached=True)
    try:
        time.sleep(5)
        r = runv("kill", "oomkill", "KILL", timeout=60)
        assert r.returncode == 0 or b"not running" in r.stderr, r.stderr
        wait_stopped(runv, "oomkill")
        assert exit_code(runv, "oomkill") is not None
        runv("delete", "oomkill", check=True)
    finally:
        runv("delete", "--force", "oomkill")
    assert leaks(before, markers=["oomkill", runv.root]) == []


def test_fork_bomb_is_killed(runv, make_bundle):
    before = host_snapshot()
    bundle = make_bundle(["sh", "-c", "f() { f | f & }; f; sleep 1000"])
    runv("run", "-d", "--bundle", bundle, "forkbomb", check=True, detached=True)
    try:
        time.sleep(3)
        r = runv("kill", "forkbomb", "KILL", timeout=60)
        assert r.returncode == 0 or b"not running" in r.stderr, r.stderr
        wait_stopped(runv, "forkbomb")
        assert exit_code(runv, "forkbomb") is not None
        runv("delete", "forkbomb", check=True)
    finally:
        runv("delete", "--force", "forkbomb")
    assert leaks(before, markers=["forkbomb", runv.root]) == []
