"""Disk and resource faults: a full --root, a full template cache, few fds, a
QEMU that does not start, a truncated or corrupt template. Each gives a clear
error or works, leaves nothing, and the next container works."""
from __future__ import annotations

import glob
import os
import resource
import subprocess

import pytest
from runv_testlib import host_snapshot, leaks


@pytest.fixture
def small_tmpfs(tmp_path):
    def make(size: str) -> str:
        path = str(tmp_path / f"tmpfs-{size}")
        os.makedirs(path)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path], check=True)
        mounted.append(path)
        return path
    mounted: list[str] = []
    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", path], check=True)


def works(runv, bundle: str, cid: str) -> None:
    runv("run", "-d", "--bundle", bundle, cid, check=True, detached=True)
    assert runv("exec", cid, "true", timeout=60).returncode == 0
    runv("delete", "--force", cid, check=True)


def clear_error(r: subprocess.CompletedProcess) -> str:
    err = r.stderr.decode()
    assert r.returncode != 0 and "Traceback" not in err and err.startswith("runv: "), err
    return err


def test_root_on_a_full_disk(runv, make_bundle, small_tmpfs):
    root = small_tmpfs("64k")
    with open(os.path.join(root, "filler"), "wb") as f:
        try:
            f.write(b"x" * (1 << 20))
        except OSError:
            pass
    runv.root = os.path.join(root, "state")
    before = host_snapshot()
    bundle = make_bundle(["sleep", "300"])
    r = runv("create", "--bundle", bundle, "full1", detached=True)
    if r.returncode == 0:  # it fitted: then it must work as usual
        runv("delete", "--force", "full1", check=True)
    else:
        clear_error(r)
    assert runv("state", "full1").returncode != 0
    assert leaks(before, markers=["full1", runv.root]) == []
    os.unlink(os.path.join(root, "filler"))
    works(runv, bundle, "full2")
    assert leaks(before, markers=["full2", runv.root]) == []


def test_template_cache_on_a_full_disk(runv, make_bundle, small_tmpfs):
    """The template cannot be saved: the container boots instead."""
    runv.env["RUNV_CACHE"] = small_tmpfs("1m")
    before = host_snapshot()
    works(runv, make_bundle(["sleep", "300"]), "cachefull")
    assert glob.glob(os.path.join(runv.env["RUNV_CACHE"], "templates", "*", "state")) == []
    assert leaks(before, markers=["cachefull", runv.root]) == []


def test_few_file_descriptors(runv, make_bundle):
    before = host_snapshot()
    bundle = make_bundle(["sleep", "300"])

    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (12, 12))

    r = runv("create", "--bundle", bundle, "emfile", detached=True, preexec_fn=low_nofile)
    if r.returncode == 0:
        runv("delete", "--force", "emfile", check=True)
    else:
        clear_error(r)
    assert leaks(before, markers=["emfile", runv.root]) == []
    works(runv, bundle, "emfile2")


def test_qemu_that_does_not_start(runv, make_bundle, tmp_path):
    before = host_snapshot()
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    env = dict(runv.env)
    runv.env.update(RUNV_QEMU=str(fake), RUNV_TEMPLATES="0", RUNV_ACCEL="tcg")
    bundle = make_bundle(["sleep", "300"])
    clear_error(runv("create", "--bundle", bundle, "noqemu", detached=True))
    assert runv("state", "noqemu").returncode != 0
    assert leaks(before, markers=["noqemu", runv.root]) == []
    runv.env = env
    works(runv, bundle, "noqemu2")


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_bad_template_is_discarded_and_made_again(damage, runv, make_bundle, tmp_path):
    runv.env["RUNV_CACHE"] = str(tmp_path / "cache")
    before = host_snapshot()
    bundle = make_bundle(["sleep", "300"])
    works(runv, bundle, "tpl1")  # makes the template
    [state] = glob.glob(os.path.join(runv.env["RUNV_CACHE"], "templates", "*", "state"))
    made = os.stat(state).st_mtime_ns
    size = os.path.getsize(state)
    assert size > 0
    if damage == "truncated":
        os.truncate(state, size // 2)
    else:
        with open(state, "r+b") as f:
            f.write(os.urandom(4096))
    works(runv, bundle, "tpl2")  # the restore fails: the template goes, the VM boots
    works(runv, bundle, "tpl3")
    assert os.path.exists(state) and os.stat(state).st_mtime_ns != made  # made again
    assert leaks(before, markers=["tpl", runv.root]) == []
