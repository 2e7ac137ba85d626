"""Bad input gets one clear line, a non-zero exit, and leaves nothing behind."""
from __future__ import annotations

import json
import os
import shutil
import signal
import time

from runv_testlib import leftovers, one_line_error


def assert_clean(runv):
    assert not os.path.isdir(runv.root) or os.listdir(runv.root) == []
    assert leftovers() == []


def test_missing_config(runv, tmp_path):
    line = one_line_error(runv("run", "--bundle", str(tmp_path), "c"))
    assert "config.json" in line
    assert_clean(runv)


def test_invalid_json(runv, make_bundle):
    bundle = make_bundle(["true"])
    with open(os.path.join(bundle, "config.json"), "w") as f:
        f.write("{not json")
    assert "config.json" in one_line_error(runv("run", "--bundle", bundle, "c"))
    assert_clean(runv)


def test_schema_violation_names_the_field(runv, make_bundle):
    bundle = make_bundle(["true"], user={"uid": "root", "gid": 0})
    line = one_line_error(runv("run", "--bundle", bundle, "c"))
    assert "process.user.uid" in line
    assert_clean(runv)


def test_missing_process(runv, make_bundle):
    def drop(config):
        del config["process"]
    assert "process" in one_line_error(runv("create", "--bundle", make_bundle([], config_edit=drop), "c"))
    assert_clean(runv)


def test_missing_rootfs(runv, make_bundle):
    bundle = make_bundle(["true"])
    shutil.rmtree(os.path.join(bundle, "rootfs"))
    assert "rootfs" in one_line_error(runv("run", "--bundle", bundle, "c"))
    assert_clean(runv)


def test_missing_executable_fails_at_create(runv, make_bundle):
    line = one_line_error(runv("create", "--bundle", make_bundle(["/no/such/binary"]), "c", detached=True))
    assert "/no/such/binary" in line
    assert_clean(runv)


def test_unknown_id(runv):
    for cmd in (["state", "nope"], ["start", "nope"], ["kill", "nope"], ["delete", "nope"],
                ["pause", "nope"], ["ps", "nope"]):
        assert "does not exist" in one_line_error(runv(*cmd))
    assert runv("delete", "--force", "nope").returncode == 0


def test_invalid_ids(runv, make_bundle):
    bundle = make_bundle(["true"])
    for bad in ("a/b", "..", "x" * 1025):
        assert "invalid container id" in one_line_error(runv("run", "--bundle", bundle, bad))
    assert_clean(runv)


def test_duplicate_id_and_wrong_states(runv, make_bundle):
    bundle = make_bundle(["sleep", "300"])
    assert runv("create", "--bundle", bundle, "dup", detached=True).returncode == 0
    try:
        assert "exists" in one_line_error(runv("create", "--bundle", bundle, "dup", detached=True))
        assert runv("start", "dup").returncode == 0
        assert "running" in one_line_error(runv("start", "dup"))
        assert "not stopped" in one_line_error(runv("delete", "dup"))
        assert runv("kill", "dup", "KILL").returncode == 0
        deadline = time.monotonic() + 60
        while runv.state("dup")["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "not running" in one_line_error(runv("kill", "dup"))
        assert "unknown signal" in one_line_error(runv("kill", "dup", "NOPE"))
    finally:
        runv("delete", "--force", "dup")
    assert_clean(runv)


def test_qemu_that_fails_to_start(runv, make_bundle, tmp_path):
    """QEMU's own complaint (here about a kernel it cannot load) is the error line."""
    bogus = tmp_path / "vmlinux"
    bogus.write_bytes(b"not a kernel\n" * 100)
    runv.env.update(RUNV_KERNEL=str(bogus), RUNV_TEMPLATES="0", RUNV_ACCEL="tcg")
    line = one_line_error(runv("run", "--bundle", make_bundle(["true"]), "q"))
    assert "qemu" in line and "kernel" in line, line
    assert_clean(runv)


def test_qemu_that_is_a_script(runv, make_bundle, tmp_path):
    """QEMU runs jailed, with its libraries and nothing else: a wrapper script
    (whose interpreter the jail lacks) is refused in one line."""
    fake = tmp_path / "qemu"
    fake.write_text("#!/bin/sh\nexec qemu-system-x86_64 \"$@\"\n")
    fake.chmod(0o755)
    runv.env.update(RUNV_QEMU=str(fake), RUNV_TEMPLATES="0")
    line = one_line_error(runv("run", "--bundle", make_bundle(["true"]), "q"))
    assert "not an ELF executable" in line, line
    assert_clean(runv)


def test_qemu_that_dies(runv, make_bundle):
    assert runv("run", "-d", "--bundle", make_bundle(["sleep", "300"]), "qd", detached=True).returncode == 0
    state_file = os.path.join(runv.root, "qd", "state.json")
    qemu_pid = json.load(open(state_file))["qemu_pid"]
    os.kill(qemu_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while runv.state("qd")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runv.state("qd")["status"] == "stopped"
    assert runv("delete", "qd").returncode == 0
    assert_clean(runv)


def test_unsafe_mount_destination(runv, make_bundle):
    def edit(config):
        config["mounts"].append({"destination": "/../../etc", "type": "tmpfs", "source": "tmpfs"})
    line = one_line_error(runv("run", "--bundle", make_bundle(["true"], config_edit=edit), "m"))
    assert "destination" in line
    assert_clean(runv)
