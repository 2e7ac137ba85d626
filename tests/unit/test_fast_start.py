"""`runv start ID` on the light path (runv/fast.py) against a fake shim: the
same request on the wire, and the same stdout, stderr, exit status and log
line as the full CLI, for every kind of reply a shim can give; and the light
path really is light (no argparse, no dataclasses) when the start succeeds."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading

import pytest

from runv.host import proc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FakeShim(threading.Thread):
    """Answers one request on <state dir>/shim.sock with `reply`, and keeps what it was sent."""

    def __init__(self, state_dir: str, reply: bytes) -> None:
        super().__init__(daemon=True)
        self.path = os.path.join(state_dir, "shim.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.reply = reply
        self.request = b""

    def run(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            self.request = conn.makefile("rb").readline()
            if self.reply:
                conn.sendall(self.reply)

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)


def created(root, cid: str = "c1") -> str:
    d = root / cid
    d.mkdir(mode=0o700)
    (d / "state.json").write_text(json.dumps({
        "id": cid, "bundle": "/b", "status": "created", "pid": os.getpid(),
        "pid_start": proc.start_time(os.getpid())}))
    return str(d)


def run_start(root, light: bool, log) -> tuple[int, bytes, bytes, str]:
    env = {**os.environ, "PYTHONPATH": REPO}
    if not light:
        env["RUNV_TEST_PAUSE_AT"] = "never"  # a fault point set: fast.py leaves it to the full CLI
    r = subprocess.run([sys.executable, "-S", "-c", "import sys; from runv.fast import entry; sys.argv[0] = 'runv'; entry()",
                        "--root", str(root), "--log", str(log), "--log-format", "json", "start", "c1"],
                       capture_output=True, env=env, timeout=60)
    text = log.read_text() if log.exists() else ""
    log.unlink(missing_ok=True)
    return r.returncode, r.stdout, r.stderr, re.sub(r'"time": "[^"]*"', "", text)


@pytest.mark.parametrize("reply", [
    b'{"ok": true}\n',
    b'{"error": "the guest would not", "kind": "InvalidState"}\n',
    b'{"error": "exec \\"x\\": Permission denied", "kind": "AgentError", "errno": 13}\n',
    b'{"error": "odd", "kind": "NoSuchKind"}\n',
    b"garbage\n",
    b"[1]\n",
    b"",  # the shim hangs up
])
def test_light_start_answers_as_the_full_cli(tmp_path, reply):
    state_dir = created(tmp_path)
    results = []
    for light in (True, False):
        shim = FakeShim(state_dir, reply)
        shim.start()
        try:
            results.append((run_start(tmp_path, light, tmp_path / "log.json"), shim.request))
        finally:
            shim.join(10)
            shim.close()
    (light, light_sent), (full, full_sent) = results
    assert light == full and light_sent == full_sent == b'{"op": "start"}\n'
    assert (light[0] == 0) == (reply == b'{"ok": true}\n'), light


def test_what_the_light_start_leaves_to_the_full_cli(tmp_path):
    """Nothing is sent, and the full CLI answers: no such container, a running one, a dead shim."""
    from runv import fast

    assert fast._start(str(tmp_path), "nope") is None
    state_dir = created(tmp_path)
    state = json.loads(open(os.path.join(state_dir, "state.json")).read())
    for changed in ({"status": "running"}, {"pid": 2**22 - 1}, {"sandbox": "pod"}, {"id": "other"}):
        with open(os.path.join(state_dir, "state.json"), "w") as f:
            json.dump({**state, **changed}, f)
        assert fast._start(str(tmp_path), "c1") is None, changed
    assert fast._start("relative", "c1") is None and fast._start(str(tmp_path), "../c1") is None


def test_a_light_start_is_light(tmp_path):
    state_dir = created(tmp_path)
    shim = FakeShim(state_dir, b'{"ok": true}\n')
    shim.start()
    code = ("import sys; from runv import fast\n"
            f"code = fast._start({str(tmp_path)!r}, 'c1')\n"
            "print(code, sorted(m for m in ('argparse', 'dataclasses', 'json', 'runv.cli') if m in sys.modules))")
    try:
        r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": REPO}, timeout=60)
    finally:
        shim.join(10)
        shim.close()
    assert r.stdout.split("\n")[0] == "0 []", r.stderr
