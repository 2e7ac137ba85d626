"""exec, --console-socket and hooks, through the real binary and real VMs."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time

import pytest
from runv_testlib import leftovers, one_line_error


@pytest.fixture
def running(runv, make_bundle):
    """A running container whose init sleeps."""
    def start(cid: str = "box", **kw) -> str:
        bundle = make_bundle(["sleep", "300"], **kw)
        assert runv("run", "-d", "--bundle", bundle, cid, detached=True).returncode == 0
        return bundle
    yield start
    for cid in os.listdir(runv.root) if os.path.isdir(runv.root) else []:
        runv("delete", "--force", cid)


def test_exec_output_stdin_and_status(runv, running):
    running()
    r = runv("exec", "box", "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (r.returncode, r.stdout, r.stderr) == (5, b"out\n", b"err\n")
    r = runv("exec", "box", "cat", input=b"through stdin\n")
    assert (r.returncode, r.stdout) == (0, b"through stdin\n")
    r = runv("exec", "--env", "X=42", "--cwd", "/tmp", "--user", "1000:1000", "box",
             "sh", "-c", "echo $X $(pwd) $(id -u)")
    assert r.stdout == b"42 /tmp 1000\n"


def test_exec_process_file_detached_with_pid_file(runv, running, tmp_path):
    running()
    process = {"args": ["sh", "-c", "sleep 1; exit 9"], "cwd": "/", "env": ["PATH=/bin"],
               "user": {"uid": 0, "gid": 0}}
    (tmp_path / "process.json").write_text(json.dumps(process))
    pid_file = tmp_path / "exec.pid"
    r = runv("exec", "--process", str(tmp_path / "process.json"), "--detach",
             "--pid-file", str(pid_file), "box", detached=True)
    assert r.returncode == 0, r.stderr
    waiter = int(pid_file.read_text())
    # The pid-file process lives as long as the exec'd process and exits with its
    # status; it is not our child, so watch it through /proc.
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{waiter}") and time.monotonic() < deadline:
        with open(f"/proc/{waiter}/stat") as f:
            if f.read().split(") ")[1].startswith("Z"):
                break
        time.sleep(0.1)
    r = runv("ps", "--format", "json", "box")
    assert len(json.loads(r.stdout)) == 1  # only the init is left


def test_exec_errors(runv, running, make_bundle):
    assert "does not exist" in one_line_error(runv("exec", "nope", "true"))
    running()
    assert "/no/such/thing" in one_line_error(runv("exec", "box", "/no/such/thing"))
    runv("kill", "box", "KILL")
    deadline = time.monotonic() + 30
    while runv.state("box")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "stopped" in one_line_error(runv("exec", "box", "true"))


def test_console_socket(runv, make_bundle, tmp_path):
    bundle = make_bundle(["sh", "-c", "tty; read line; echo got $line; exit 6"], terminal=True)
    path = str(tmp_path / "console.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        create = runv.popen("create", "--bundle", bundle, "--console-socket", path, "tty1",
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        conn, _ = server.accept()
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        conn.close()
    master = fds[0]
    # create's own stdout and stderr must close: engines read them to the end.
    out, err = create.communicate(timeout=120)
    assert create.returncode == 0, err
    assert runv("start", "tty1").returncode == 0
    os.write(master, b"hello\n")
    data = b""
    deadline = time.monotonic() + 60
    while b"got hello" not in data and time.monotonic() < deadline:
        try:
            data += os.read(master, 4096)
        except OSError:
            break
    os.close(master)
    assert b"/dev/pts/0" in data and b"got hello" in data, data
    deadline = time.monotonic() + 60
    while runv.state("tty1")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runv("delete", "tty1").returncode == 0


def hook_script(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_hooks_run_in_order_with_the_state(runv, make_bundle, tmp_path):
    log = tmp_path / "hooks.log"
    hooks = {kind: [{"path": hook_script(tmp_path, kind, f'read s; echo "{kind} $s" >> {log}\n')}]
             for kind in ("createRuntime", "prestart", "createContainer", "startContainer",
                          "poststart", "poststop")}

    def edit(config):
        config["hooks"] = hooks
    r = runv("run", "--bundle", make_bundle(["true"], config_edit=edit), "hooked")
    assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == [
        "createRuntime", "prestart", "createContainer", "startContainer", "poststart", "poststop"]
    state = json.loads(lines[0].split(" ", 1)[1])
    assert state["id"] == "hooked" and state["status"] == "created" and state["pid"] > 0


def test_failing_prestart_fails_create_and_leaves_nothing(runv, make_bundle, tmp_path):
    def edit(config):
        config["hooks"] = {"prestart": [{"path": hook_script(tmp_path, "bad", "echo nope >&2; exit 3\n")}]}
    line = one_line_error(runv("run", "--bundle", make_bundle(["true"], config_edit=edit), "h2"))
    assert "prestart" in line and "nope" in line
    assert os.listdir(runv.root) == [] and leftovers() == []


def test_hook_that_is_not_executable(runv, make_bundle, tmp_path):
    path = tmp_path / "notexec"
    path.write_text("#!/bin/sh\n")
    path.chmod(stat.S_IRUSR)

    def edit(config):
        config["hooks"] = {"createRuntime": [{"path": str(path)}]}
    assert "not an executable" in one_line_error(
        runv("run", "--bundle", make_bundle(["true"], config_edit=edit), "h3"))
    assert not os.path.exists(runv.root) or os.listdir(runv.root) == []


def test_failing_poststart_and_poststop_hooks_only_warn(runv, make_bundle, tmp_path):
    log = tmp_path / "ran.log"
    bad = hook_script(tmp_path, "bad", "exit 1\n")
    good = hook_script(tmp_path, "good", f"echo ran >> {log}\n")

    def edit(config):
        config["hooks"] = {"poststart": [{"path": bad}, {"path": good}],
                           "poststop": [{"path": bad}, {"path": good}]}
    r = runv("run", "--bundle", make_bundle(["true"], config_edit=edit), "warn1")
    assert r.returncode == 0, r.stderr
    assert log.read_text() == "ran\nran\n"
