"""The container lifecycle through the real runv binary, each container in a real VM."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest


def no_pid_namespace(config):
    # Without its own pid namespace the init is not pid 1, so TERM and KILL
    # have their default effect, exactly as under runc.
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "pid"]


def wait_status(runv, cid, status, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = runv("state", cid)  # may not exist yet while `run` creates it
        if r.returncode == 0 and json.loads(r.stdout)["status"] == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"{cid} never reached {status}: {runv('state', cid)}")


def test_run_prints_output_from_the_vm(runv, make_bundle):
    bundle = make_bundle(["sh", "-c", "echo hello from $(uname -r) on $(hostname)"])
    r = runv("run", "--bundle", bundle, "echo1")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("hello from ") and out.endswith(" on runv\n"), out
    # The guest kernel is ours, not the host's.
    assert os.uname().release not in out


@pytest.mark.parametrize("code", [0, 3, 42])
def test_exit_code_comes_back(runv, make_bundle, code):
    r = runv("run", "--bundle", make_bundle(["sh", "-c", f"exit {code}"]), f"exit{code}")
    assert r.returncode == code, r.stderr


def test_stdin_passes_through(runv, make_bundle):
    r = runv("run", "--bundle", make_bundle(["cat"]), "cat1", input=b"data\nmore data\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"data\nmore data\n"


def test_stdout_and_stderr_stay_separate(runv, make_bundle):
    r = runv("run", "--bundle", make_bundle(["sh", "-c", "echo out; echo err >&2; echo out2"]), "sep")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"out\nout2\n", b"err\n")


def test_large_output_arrives_whole(runv, make_bundle):
    bundle = make_bundle(["sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' x; echo"])
    r = runv("run", "--bundle", bundle, "big")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"x" * 5000000 + b"\n"


def test_env_cwd_user_hostname(runv, make_bundle):
    def edit(config):
        config["hostname"] = "box1"
    bundle = make_bundle(["sh", "-c", "echo $FOO $(pwd) $(id -u):$(id -g) $(id -G) $(hostname)"],
                         config_edit=edit, env=["PATH=/bin", "FOO=bar"], cwd="/tmp",
                         user={"uid": 1000, "gid": 1001, "additionalGids": [1002]})
    r = runv("run", "--bundle", bundle, "ident")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["bar", "/tmp", "1000:1001", "1001", "1002", "box1"]


def test_readonly_root_and_writes_through_the_share(runv, make_bundle):
    def rw(config):
        config["root"]["readonly"] = False
    bundle = make_bundle(["sh", "-c", "echo written > /tmp/out.txt"], config_edit=rw)
    r = runv("run", "--bundle", bundle, "w1")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(bundle, "rootfs", "tmp", "out.txt")) as f:
        assert f.read() == "written\n"

    def ro(config):
        config["root"]["readonly"] = True
    bundle = make_bundle(["sh", "-c", "touch /x 2>/dev/null && echo writable || echo readonly"], config_edit=ro)
    r = runv("run", "--bundle", bundle, "ro1")
    assert r.stdout == b"readonly\n"


def test_pid_namespace_makes_init_pid_1(runv, make_bundle):
    r = runv("run", "--bundle", make_bundle(["sh", "-c", "echo $$"]), "pid1")
    assert r.stdout == b"1\n"


def test_create_start_state_kill_delete(runv, make_bundle, tmp_path):
    bundle = make_bundle(["sleep", "300"], config_edit=no_pid_namespace)
    pid_file = str(tmp_path / "pid")
    r = runv("create", "--bundle", bundle, "--pid-file", pid_file, "life", detached=True)
    assert r.returncode == 0, r.stderr
    state = runv.state("life")
    assert state["status"] == "created"
    assert state["id"] == "life" and state["bundle"] == bundle and state["ociVersion"]
    assert int(open(pid_file).read()) == state["pid"] > 0
    os.kill(state["pid"], 0)  # the shim is alive

    assert runv("start", "life").returncode == 0
    assert runv.state("life")["status"] == "running"
    r = runv("list", "--format", "json")
    assert any(c["id"] == "life" and c["status"] == "running" for c in __import__("json").loads(r.stdout))
    assert b"life" in runv("list").stdout

    assert runv("kill", "life", "KILL").returncode == 0
    wait_status(runv, "life", "stopped")
    assert runv.state("life")["pid"] == 0
    assert runv("delete", "life").returncode == 0
    assert runv("state", "life").returncode != 0


@pytest.mark.parametrize("sig,code", [("TERM", 143), ("KILL", 137)])
def test_signal_exit_status(runv, make_bundle, sig, code):
    bundle = make_bundle(["sleep", "300"], config_edit=no_pid_namespace)
    cid = f"sig{code}"
    p = runv.popen("run", "--bundle", bundle, cid)
    try:
        wait_status(runv, cid, "running", timeout=120)
        assert runv("kill", cid, sig).returncode == 0
        assert p.wait(60) == code
    finally:
        if p.poll() is None:
            p.kill()
            runv("delete", "--force", cid)


def test_run_forwards_signals(runv, make_bundle):
    bundle = make_bundle(["sh", "-c", "trap 'echo got TERM; exit 7' TERM; while true; do sleep 0.1; done"])
    p = runv.popen("run", "--bundle", bundle, "fwd", stdout=__import__("subprocess").PIPE)
    try:
        wait_status(runv, "fwd", "running", timeout=120)
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=60)
        assert (p.returncode, out) == (7, b"got TERM\n")
    finally:
        if p.poll() is None:
            p.kill()
            runv("delete", "--force", "fwd")


def test_detached_run_and_force_delete(runv, make_bundle):
    bundle = make_bundle(["sleep", "300"])
    r = runv("run", "--detach", "--bundle", bundle, "det", detached=True)
    assert r.returncode == 0, r.stderr
    state = runv.state("det")
    assert state["status"] == "running"
    assert runv("delete", "--force", "det").returncode == 0
    assert runv("state", "det").returncode != 0
    from runv.host import proc
    assert not proc.alive(state["pid"], None)  # gone, or a zombie of an init that does not reap


def test_pause_and_resume(runv, make_bundle):
    bundle = make_bundle(["sleep", "300"])
    assert runv("run", "-d", "--bundle", bundle, "pz", detached=True).returncode == 0
    try:
        assert runv("pause", "pz").returncode == 0
        assert runv.state("pz")["status"] == "paused"
        assert runv("resume", "pz").returncode == 0
        assert runv.state("pz")["status"] == "running"
        r = runv("ps", "--format", "json", "pz")
        assert r.returncode == 0 and len(__import__("json").loads(r.stdout)) >= 1
    finally:
        runv("delete", "--force", "pz")
