"""Kill a runv process (or the shim, QEMU, a hook) at a named phase.

`RUNV_TEST_PAUSE_AT=<phase>` stops the process that reaches the phase
(runv/faultpoint.py); the harness waits for that, SIGKILLs the victim, lets
the others go on, and waits for the command to end.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

# phase -> the processes that may be killed there. "paused" is the process that
# stopped itself (the shim for shim.*, the CLI otherwise); "cli" the command run.
VICTIMS: dict[str, tuple[str, ...]] = {
    "create.forked": ("cli", "shim"),
    "shim.cgroup": ("shim", "cli"),
    "shim.network": ("shim", "cli"),
    "shim.qemu": ("shim", "qemu", "cli"),
    "shim.created": ("shim", "qemu", "cli"),
    "start.sent": ("cli", "shim", "qemu"),
    "exec.sent": ("cli", "shim", "qemu"),
    "delete.killed": ("cli",),
}
# The command whose run reaches the phase.
COMMAND = {"start.sent": "start", "exec.sent": "exec", "delete.killed": "delete"}
PAUSE_TIMEOUT = 120.0


@dataclass
class Injected:
    phase: str
    victim: str
    pid: int          # what was killed
    returncode: int   # the command's


def env_pausing(env: dict[str, str], phase: str, report: str) -> dict[str, str]:
    return {**env, "RUNV_TEST_PAUSE_AT": phase, "RUNV_TEST_PAUSE_FILE": report}


def wait_paused(report: str, cli: subprocess.Popen, timeout: float = PAUSE_TIMEOUT) -> int | None:
    """The pid that stopped itself at the phase, or None if the command ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(report) as f:
                line = f.readline()
        except FileNotFoundError:
            line = ""
        if line.endswith("\n"):
            pid = int(line.split()[0])
            if _state(pid) in ("T", None):
                return pid
        elif cli.poll() is not None:
            return None
        time.sleep(0.01)
    raise AssertionError(f"nothing reached the phase in {timeout} s")


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def recorded(root: str, cid: str) -> dict:
    try:
        with open(os.path.join(root, cid, "state.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def victim_pid(victim: str, paused: int, cli: subprocess.Popen, root: str, cid: str) -> int | None:
    if victim == "cli":
        return cli.pid
    state = recorded(root, cid)
    if victim == "shim":
        if state.get("pid"):
            return state["pid"]
        kids = children(cli.pid)  # create.forked: the shim has not written its pid yet
        return kids[0] if kids else None
    if victim == "qemu":
        shim = state.get("pid") or paused
        qemus = [p for p in children(shim) if _comm(p).startswith("qemu")]
        return qemus[0] if qemus else None
    raise ValueError(victim)


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def inject(runv_bin: str, root: str, env: dict[str, str], argv: list[str], cid: str,
           phase: str, victim: str, timeout: float = 180.0) -> Injected:
    """Run `runv --root root *argv` pausing at `phase`, SIGKILL `victim` there, let
    the rest go on; what happened. The victim is killed even if it was not the one paused."""
    fd, report = tempfile.mkstemp(prefix="runv-pause.")
    os.close(fd)
    os.unlink(report)
    err = tempfile.TemporaryFile()  # noqa: SIM115 - not a pipe: the shim create forks keeps it open
    cli = subprocess.Popen([runv_bin, "--root", root, *argv], env=env_pausing(env, phase, report),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        paused = wait_paused(report, cli)
        if paused is None:
            err.seek(0)
            raise AssertionError(f"runv {' '.join(argv)} ended before {phase}: {err.read().decode()}")
        pid = victim_pid(victim, paused, cli, root, cid)
        assert pid, f"no {victim} at {phase}"
        os.kill(pid, signal.SIGKILL)
        if pid != paused:
            os.kill(paused, signal.SIGCONT)
        cli.wait(timeout)
        return Injected(phase, victim, pid, cli.returncode)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        err.close()
        try:
            os.unlink(report)
        except OSError:
            pass


# ---------------------------------------------------------------- a CNI-made namespace

CT_ADDR, PEER_ADDR, PREFIX = "10.214.9.2", "10.214.9.1", 24


def make_netns(tag: str) -> tuple[str, str]:
    """A namespace as a CNI plugin leaves it: eth0 (a veth) with an address, a
    route and a default route, its peer in a namespace of its own."""
    ct, peer = f"runvf-ct{tag}", f"runvf-peer{tag}"

    def ip(*args: str) -> None:
        r = subprocess.run(["ip", *args], capture_output=True, text=True)
        assert r.returncode == 0, f"ip {' '.join(args)}: {r.stderr}"

    ip("netns", "add", ct)
    ip("netns", "add", peer)
    ip("-n", peer, "link", "add", "veth-peer", "type", "veth", "peer", "name", "eth0", "netns", ct)
    ip("-n", peer, "addr", "add", f"{PEER_ADDR}/{PREFIX}", "dev", "veth-peer")
    ip("-n", peer, "link", "set", "veth-peer", "up")
    ip("-n", ct, "link", "set", "lo", "up")
    ip("-n", ct, "link", "set", "eth0", "up")
    ip("-n", ct, "addr", "add", f"{CT_ADDR}/{PREFIX}", "dev", "eth0")
    ip("-n", ct, "route", "add", "default", "via", PEER_ADDR)
    return ct, peer


def remove_netns(*names: str) -> None:
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def join_netns(ns: str):
    """A config_edit for make_bundle: the container's network is the named namespace."""
    def edit(config):
        config["linux"]["namespaces"] = [
            n for n in config["linux"]["namespaces"] if n["type"] != "network"] + [
            {"type": "network", "path": f"/run/netns/{ns}"}]
    return edit
