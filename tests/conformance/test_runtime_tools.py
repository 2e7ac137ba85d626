"""A fast subset of the OCI runtime-tools validation suite against runv, so that
a regression fails CI. The whole suite, side by side with runc and crun, is
`make conformance` (conformance/RESULTS.md)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
SUBSET = ["create", "default", "delete_resources", "hostname", "kill_no_effect", "killsig",
          "linux_cgroups_pids", "linux_devices", "linux_sysctl", "process_capabilities",
          "process_oom_score_adj", "process_user", "root_readonly_true", "state"]


@pytest.fixture(scope="session")
def verdicts(tmp_path_factory) -> dict[str, str]:
    subprocess.run([os.path.join(REPO, "conformance", "build.sh")], check=True,
                   stdout=subprocess.DEVNULL, timeout=1800)
    runv = os.environ.get("RUNV_BIN") or shutil.which("runv")
    out = tmp_path_factory.mktemp("conformance") / "RESULTS.md"
    argv = [sys.executable, os.path.join(REPO, "conformance", "run.py"),
            "--runtime", f"runv={runv}", "--out", str(out)]
    for name in SUBSET:
        argv += ["--only", name]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    found = dict(re.findall(r"\[conformance\] runv\s+(\S+)\s+(PASS|FAIL|TIMEOUT)", r.stdout + r.stderr))
    found["_log"] = r.stdout + r.stderr
    return found


@pytest.mark.parametrize("name", SUBSET)
def test_validation_program_passes(verdicts, name):
    assert verdicts.get(name) == "PASS", [ln for ln in verdicts["_log"].splitlines() if name in ln]


def test_mount_cgroups_gives_the_host_back():
    """`make conformance --mount-cgroups` must not leave hierarchies behind that
    change what later tests (and runtimes) see."""
    sys.path.insert(0, os.path.join(REPO, "conformance"))
    import run as harness

    if not harness.host_is_cgroup_v1():
        pytest.skip("a cgroup v2-only host: --mount-cgroups does nothing")
    before = (harness.attached_controllers(), sorted(os.listdir("/sys/fs/cgroup")))
    made = harness.mount_cgroups()
    try:
        for mp in made:
            if not os.path.islink(mp):
                os.makedirs(os.path.join(mp, "runv-test", "leaf"))  # as a runtime leaves them
    finally:
        harness.unmount_cgroups(made)
    assert (harness.attached_controllers(), sorted(os.listdir("/sys/fs/cgroup"))) == before
