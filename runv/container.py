"""The Container: the only code that moves a container between states.

The status is recomputed from live facts before every action: a container
whose shim is gone is stopped, whatever state.json last said.
"""
from __future__ import annotations

import signal
from dataclasses import asdict, dataclass
from typing import Any

from runv import faultpoint, ocistate
from runv.errors import InvalidState
from runv.host import proc
from runv.sandbox import client as shim_client
from runv.state import State, StateDir
from runv.status import Status, require


@dataclass
class Container:
    dir: StateDir
    state: State

    @classmethod
    def load(cls, root: str, container_id: str, lock: bool = False) -> Container:
        sd = StateDir(root, container_id)
        if lock:
            sd.lock()
        return cls(sd, sd.read())

    @property
    def id(self) -> str:
        return self.dir.id

    @property
    def status(self) -> Status:
        return Status(ocistate.live_status(self.state.status, self.state.pid, self.state.pid_start))

    def shim_alive(self) -> bool:
        return proc.alive(self.state.pid, self.state.pid_start)

    def oci_state(self) -> dict[str, Any]:
        """The state as `runv state` prints it (and hooks get it on stdin)."""
        return ocistate.oci_state(asdict(self.state))

    @property
    def control_dir(self) -> str:
        """Where the shim that serves this container listens: its own, or its pod's (runv.member)."""
        return StateDir(self.dir.root, self.state.sandbox).path if self.state.sandbox else self.dir.path

    def addressed(self) -> dict[str, Any]:
        """What a request to the pod's shim adds to name this container."""
        return {"container": self.id} if self.state.sandbox else {}

    def _call(self, op: str, **args: Any) -> dict[str, Any]:
        return shim_client.call(self.control_dir, op, **args, **self.addressed())

    def start(self) -> None:
        require(self.status.can_start(), self.id, "start", self.status)
        faultpoint.reached("start.sent")
        self._call("start")

    def kill(self, signo: int, all_processes: bool = False) -> None:
        status = self.status
        if not status.can_kill():
            raise InvalidState("container not running")
        self._call("kill", signal=signo, all=all_processes)

    def pause(self) -> None:
        require(self.status.can_pause(), self.id, "pause", self.status)
        self._call("pause")

    def resume(self) -> None:
        require(self.status.can_resume(), self.id, "resume", self.status)
        self._call("resume")

    def update(self, resources: dict[str, Any]) -> None:
        """New limits (linux.resources fields) for the container and its VM."""
        status = self.status
        require(status in (Status.CREATED, Status.RUNNING, Status.PAUSED), self.id, "update", status)
        self._call("update", resources=resources)

    def processes(self) -> list[int]:
        if self.status is Status.STOPPED:
            return []
        return [int(p) for p in self._call("ps")["pids"]]

    def delete(self, force: bool = False) -> None:
        status = self.status
        if not status.can_delete():
            if not force:
                raise InvalidState(
                    f"cannot delete container {self.id} that is not stopped: {status.value}")
            self.destroy()
        elif not proc.wait_gone(self.state.pid, self.state.pid_start, 2.0):
            # The container has exited; its shim had a moment to finish up.
            self.destroy()
        else:
            self.teardown()  # whatever a shim that died left behind
        self.remove_cgroup()
        if self.state.hooks.get("poststop") and status is not Status.CREATING:
            from runv.host import hooks

            state = self.oci_state()
            state["status"] = "stopped"
            hooks.run_warn(self.state.hooks, "poststop", state, self.state.bundle)
        self.dir.remove()

    def remove_cgroup(self) -> None:
        if self.state.cgroup:
            from runv.host.cgroups import Cgroup

            Cgroup(self.state.cgroup.split(":"), self.state.cgroup_made).destroy()

    def destroy(self) -> None:
        """Kill the shim and its VM, whatever they are doing, and undo what the shim would have."""
        proc.kill(self.state.pid, signal.SIGKILL, self.state.pid_start)
        proc.wait_gone(self.state.pid, self.state.pid_start, 5.0)
        faultpoint.reached("delete.killed")
        self.teardown()

    def teardown(self) -> None:
        """The sandbox torn down from the recorded state (its shim is gone)."""
        from runv.sandbox.teardown import teardown

        teardown(self.state)

