"""A hook killed, or the shim killed while a hook runs: the hook does not
outlive the shim, create fails with one line, nothing is left."""
from __future__ import annotations

import signal
import sys
import time

import pytest
from harness import children
from runv_testlib import host_snapshot, leaks


def wait_for_hook(shim_of_create: int, marker: str, timeout: float = 60.0) -> tuple[int, int]:
    """(shim, hook) pids once the hook runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for shim in children(shim_of_create):
            for pid in children(shim):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        return shim, pid
        time.sleep(0.02)
    raise AssertionError("the hook never ran")


@pytest.mark.parametrize("victim", ["shim"])
def test_sigkill_during_a_prestart_hook(victim, runv, make_bundle):
    before = host_snapshot()
    cid = f"hook-{victim}"
    marker = f"{runv.root}/hook-marker"

    def edit(config):
        # One process, whose command line names the marker (a shell's child
        # would keep the hook's output pipes open after the hook is killed).
        config["hooks"] = {"prestart": [{"path": sys.executable,
                                         "args": ["python3", "-c", "import time; time.sleep(300)", marker]}]}
    create = runv.popen("create", "--bundle", make_bundle(["sleep", "300"], config_edit=edit), cid,
                        stdin=-3, stdout=-3, stderr=-3)  # DEVNULL
    try:
        shim, hook = wait_for_hook(create.pid, marker)
        import os

        os.kill(hook if victim == "hook" else shim, signal.SIGKILL)
        assert create.wait(60) != 0
    finally:
        if create.poll() is None:
            create.kill()
            create.wait()
    r = runv("delete", "--force", cid)
    assert r.returncode == 0 or b"does not exist" in r.stderr
    deadline = time.monotonic() + 10
    while leaks(before, markers=[cid, runv.root]) and time.monotonic() < deadline:
        time.sleep(0.1)  # the hook's SIGKILL from PDEATHSIG is on its way
    assert leaks(before, markers=[cid, runv.root]) == []
