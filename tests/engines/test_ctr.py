"""containerd runs containers through runv: `ctr run --runc-binary <runv> ...`.

containerd's runc v2 shim calls runv where it would call runc; the runtime's
--root is /run/containerd/runc/<namespace>.
"""
from __future__ import annotations

import os
import time

import pytest
from daemons import CTR_IMAGE, RUNTIME, run_in_pty

pytestmark = pytest.mark.engines

READY_LOOP = 'echo ready > /tmp/ready; while :; do sleep 0.1; done'


def task_status(ctr, cid: str) -> str:
    for line in ctr("task", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == cid:
            return fields[-1]
    return ""


def wait_file(ctr, cid: str, path: str, text: str, timeout: float = 30) -> None:
    """Wait until `cat path` in the container shows text."""
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        n += 1
        r = ctr("task", "exec", "--exec-id", f"wait{n}", cid, "cat", path, timeout=15)
        if r.returncode == 0 and text in r.stdout:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never showed in {path} of {cid}: {r.stdout!r} {r.stderr!r}")
        time.sleep(0.3)


def test_run(ctr, name):
    r = ctr.run("--rm", CTR_IMAGE, name, "sh", "-c", "echo plain; uname -r; exit 5")
    assert r.returncode == 5, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "plain", r.stdout
    # runv's guest kernel, not the host's
    assert (lines[1] != os.uname().release) == (RUNTIME == "runv"), r.stdout


def test_task_exec(ctr, name):
    r = ctr.run("-d", CTR_IMAGE, name, "sh", "-c", READY_LOOP)
    assert r.returncode == 0, r.stderr
    wait_file(ctr, name, "/tmp/ready", "ready")
    assert task_status(ctr, name) == "RUNNING"

    r = ctr("task", "exec", "--exec-id", "e1", name, "sh", "-c", "echo exec-ok; echo exec-err >&2; exit 4")
    assert (r.returncode, r.stdout) == (4, "exec-ok\n"), r.stderr
    assert "exec-err" in r.stderr
    r = ctr("task", "exec", "--exec-id", "e2", name, "sh", "-c", "echo shared > /tmp/shared")
    assert r.returncode == 0, r.stderr
    r = ctr("task", "exec", "--exec-id", "e3", name, "cat", "/tmp/shared")
    assert (r.returncode, r.stdout) == (0, "shared\n"), r.stderr

    r = ctr("task", "ps", name)
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) >= 2, r.stdout + r.stderr

    rc, out = run_in_pty(ctr.argv("task", "exec", "-t", "--exec-id", "e4", name, "sh", "-c", "tty; echo tty-ok"),
                         env=ctr.engines.env())
    assert rc == 0, out
    assert b"/dev/pts/" in out and b"tty-ok" in out, out


def test_task_kill(ctr, name):
    r = ctr.run("-d", CTR_IMAGE, name, "sh", "-c",
                'trap "echo got-usr1 > /tmp/sig" USR1; trap "exit 3" TERM; ' + READY_LOOP)
    assert r.returncode == 0, r.stderr
    wait_file(ctr, name, "/tmp/ready", "ready")

    r = ctr("task", "kill", "-s", "USR1", name)
    assert r.returncode == 0, r.stderr
    wait_file(ctr, name, "/tmp/sig", "got-usr1", timeout=30)
    assert task_status(ctr, name) == "RUNNING"

    r = ctr("task", "kill", "-s", "TERM", name)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while task_status(ctr, name) != "STOPPED":
        assert time.monotonic() < deadline, ctr("task", "ls").stdout
        time.sleep(0.2)
    r = ctr("task", "delete", name)
    assert r.returncode == 0, r.stderr
    assert ctr("container", "delete", name).returncode == 0


def test_task_kill_all_with_kill(ctr, name):
    r = ctr.run("-d", CTR_IMAGE, name, "sh", "-c", READY_LOOP)
    assert r.returncode == 0, r.stderr
    wait_file(ctr, name, "/tmp/ready", "ready")
    r = ctr("task", "kill", "--all", "-s", "KILL", name)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while task_status(ctr, name) != "STOPPED":
        assert time.monotonic() < deadline, ctr("task", "ls").stdout
        time.sleep(0.2)
    assert ctr("task", "delete", name).returncode == 0
    assert ctr("container", "delete", name).returncode == 0


def test_run_with_tty(ctr, name):
    rc, out = run_in_pty(ctr.run_argv("--rm", "-t", CTR_IMAGE, name, "sh", "-c", "tty; echo tty-ok; exit 6"),
                         env=ctr.engines.env())
    assert rc == 6, out
    assert b"/dev/pts/" in out and b"tty-ok" in out, out
