"""Tear a sandbox down from its recorded state alone, once its shim is gone
(killed by `delete --force`, or dead): QEMU, found by its pid and start time,
and the taps left in a network namespace that outlives the shim. The state dir
and the cgroup dirs runv made are removed by the container layer (runv.state,
runv.host.cgroups), from the same record."""
from __future__ import annotations

import os
import signal

from runv.host import proc
from runv.state import State

QEMU_GONE_TIMEOUT = 5.0


def teardown(state: State) -> None:
    """Undo what the shim of `state` would have undone, had it lived. Safe to repeat."""
    stop_qemu(state)
    if state.taps and state.netns_path:
        leave_network(state.netns_path, state.taps)


def stop_qemu(state: State) -> None:
    pid = state.qemu_pid
    if not pid:
        return
    started = state.qemu_start
    if started is None:  # a state from before qemu_start was recorded
        if not _is_qemu(pid):
            return
        started = proc.start_time(pid)
    if proc.kill(pid, signal.SIGKILL, started):
        proc.wait_gone(pid, started, QEMU_GONE_TIMEOUT)


def leave_network(netns_path: str, taps: dict[str, str]) -> None:
    """In a child that joins the namespace: the taps go, the interfaces get
    their addresses and routes back. The netlink code is imported in the child only."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            from runv.host import network, syscalls

            syscalls.setns(netns_path, syscalls.NAMESPACE_FLAGS["network"])
            network.teardown_recorded(taps)
            code = 0
        except BaseException:  # noqa: BLE001 - a namespace gone meanwhile has nothing to undo
            pass
        os._exit(code)
    os.waitpid(pid, 0)


def _is_qemu(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().startswith("qemu")
    except OSError:
        return False
