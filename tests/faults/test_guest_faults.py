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


MiB = 2**20
NO_ROOM = {"io.github.runv.memory.max": str(128 * MiB)}  # the VM's RAM is all the guest has: no balloon


@pytest.mark.parametrize("panic,annotations,limit", [
    (False, {}, None), (True, {}, None), (False, NO_ROOM, None), (True, NO_ROOM, None), (False, {}, 64 * MiB),
], ids=["oom-killer", "panic-on-oom", "oom-killer-no-balloon", "panic-on-oom-no-balloon", "oom-killer-limit"])
def test_memory_exhausted_ends_on_its_own(panic, annotations, limit, runv, make_bundle):
    """The OOM killer ends it (137, as under runc), or with vm.panic_on_oom the
    guest kernel panics, QEMU exits and the container is stopped with 255
    (overcommit on, so that it is the OOM killer, not malloc, that says no).
    Without a cap below the guest's memory (runv.oci.resources.container_memory_max)
    the guest ran out as a whole and livelocked: about one run in two, and every
    time without a balloon."""
    before = host_snapshot()
    cid = f"oom{int(panic)}{len(annotations)}{int(bool(limit))}"
    values = {"vm.overcommit_memory": "1", **({"vm.panic_on_oom": "1"} if panic else {})}

    def edit(config):
        sysctl(values)(config)
        config["annotations"] = annotations
        if limit:
            config["linux"]["resources"]["memory"] = {"limit": limit}
    runv("run", "-d", "--bundle", make_bundle(EAT_MEMORY, config_edit=edit), cid, check=True, detached=True)
    try:
        wait_stopped(runv, cid)
        code = exit_code(runv, cid)
        assert code == (255 if panic else 137), code
    finally:
        runv("delete", "--force", cid)
    assert leaks(before, markers=[cid, runv.root]) == []


def test_a_panic_ends_the_vm_even_if_the_config_says_hang(runv, make_bundle):
    """kernel.panic=0 would leave a panicked guest spinning, its container
    running for ever; the guest tells QEMU (pvpanic), which exits: 255."""
    before = host_snapshot()
    values = {"vm.overcommit_memory": "1", "vm.panic_on_oom": "1", "kernel.panic": "0"}
    bundle = make_bundle(EAT_MEMORY, config_edit=sysctl(values))
    runv("run", "-d", "--bundle", bundle, "panic0", check=True, detached=True)
    try:
        wait_stopped(runv, "panic0")
        assert exit_code(runv, "panic0") == 255
        with open(f"{runv.root}/panic0/console.log", errors="replace") as f:
            assert "Kernel panic" in f.read()
    finally:
        runv("delete", "--force", "panic0")
    assert leaks(before, markers=["panic0", runv.root]) == []


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
