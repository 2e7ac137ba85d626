"""A Sandbox: one VM, its agent link, the stdio relays of the processes in it,
and the containers it holds, run by the shim's event loop until the VM is down.

A sandbox holds its own container, whose init is stream 1, and for a pod the
pod's next containers, each created on a stream of its own (runv.sandbox.pod)
and each with its own state dir. It is the only code in the shim that changes
a container's status, and it does so only through State.move
(runv.status.TRANSITIONS).
"""
from __future__ import annotations

import os
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runv import errors, log
from runv.agent import protocol as P
from runv.agent.link import Link, agent_error
from runv.agent.protocol import Msg
from runv.errors import QemuError, RunvError
from runv.qemu.vm import VM
from runv.sandbox.client import REQUEST_TIMEOUT
from runv.sandbox.loop import Loop
from runv.sandbox.relay import Relay
from runv.state import State, StateDir
from runv.status import Status

SHUTDOWN_TIMEOUT = 5.0
KILL_GRACE = 10.0  # after a SIGKILL of the init, for the guest to report its end
QEMU_DIED = 255
KILLED = 128 + signal.SIGKILL
INIT = 1  # the container's init is stream 1
MAX_PAUSED_SIGNALS = 1024
BALLOON_SETTLE_TIMEOUT = 10.0  # how long a pod's next container waits for the guest to get its memory

Answer = Callable[..., None]      # answer(reply: dict, close: bool = True)
Fail = Callable[[str], None]


@dataclass
class Guest:
    """A container in the sandbox's VM: its state dir and state, its init's stream.
    A pod's next container also has `ended`, which tells its light shim
    (runv.member) the exit status, and its files on the pod share. Once its
    light shim is gone, its state dir is `delete`'s alone: not `written`."""
    sd: StateDir
    state: State
    stream: int
    ended: Callable[[int], None] | None = None
    written: bool = True


class Sandbox:
    def __init__(self, sd: StateDir, state: State, vm: VM, decoder: P.Decoder | None = None) -> None:
        self.sd = sd
        self.state = state
        self.vm = vm
        self.own = Guest(sd, state, INIT)
        self.members: dict[int, Guest] = {}  # a pod's next containers, by their init's stream
        self.loop = Loop()
        self.link = Link(vm.agent, self.loop.watch, self._on_frame, self._on_cut, REQUEST_TIMEOUT, decoder)
        self.relays: dict[int, Relay] = {}
        self.exited: set[int] = set()
        self.paused_signals: set[tuple[int, int, bool]] = set()
        self.waiters: dict[int, Callable[[int], None]] = {}
        self.next_stream = INIT + 1
        self.nics: list[Any] = []
        self.exit_code: int | None = None
        self.shutdown_deadline: float | None = None
        self.qmp: Any = None
        self.paused_update: bytes | None = None  # UPDATE to send on resume
        self.host_floor = 0  # the memory floor of the host cgroup's last update (runv update)
        self.killed = False  # its init was sent SIGKILL: the VM stops after KILL_GRACE at the latest

    def attach(self, stream: int, relay: Relay) -> None:
        self.relays[stream] = relay
        relay.attach(self.link, self.loop.watch, stream)

    # --- frames from the guest --------------------------------------------------

    def _on_cut(self, reason: str) -> None:
        """Stop the VM: a guest that breaks the protocol is not talked to again.
        The container ends as if QEMU died (unless its init had exited)."""
        log.error(f"container {self.state.id}: the guest agent broke the protocol ({reason}): stopping the VM")
        self.vm.kill()

    def _on_frame(self, f: P.Frame) -> None:
        if f.type in (Msg.STDOUT, Msg.STDERR):
            self._live_relay(f).output(1 if f.type == Msg.STDOUT else 2, f.payload)
        elif f.type == Msg.ACK:
            which, nbytes = P.parse_ack(f.payload)
            relay = self.relays.get(f.stream)
            if relay:
                relay.acked(which, nbytes)
            elif not INIT < f.stream < self.next_stream:
                raise P.ProtocolError(f"ACK for unknown stream {f.stream}")
            # else: stdin the agent dropped after an exec'd process ended
        elif f.type == Msg.EXIT:
            self._live_relay(f)
            self.exited.add(f.stream)
            self._exited(f.stream, P.parse_exit(f.payload))
        else:
            raise P.ProtocolError(f"unexpected {f.type.name} on stream {f.stream}")

    def _live_relay(self, f: P.Frame) -> Relay:
        relay = self.relays.get(f.stream)
        if relay is None or f.stream in self.exited:
            raise P.ProtocolError(f"{f.type.name} for {'exited' if relay else 'unknown'} "
                                  f"stream {f.stream}")
        return relay

    def _exited(self, stream: int, code: int) -> None:
        log.debug(f"process {stream} exited with {code}")
        relay = self.relays.get(stream)
        if relay:
            relay.finish()
        if stream in self.members:
            m = self.members[stream]
            if Status(m.state.status) is not Status.STOPPED:
                self.move(m, Status.STOPPED, code)
            self.waiters[stream] = lambda code: self._member_ended(m, code)  # once its output is out
        if stream != INIT:
            def done() -> None:
                if relay:
                    relay.close()
                    del self.relays[stream]
                waiter = self.waiters.pop(stream, None)
                if waiter:
                    waiter(code)
            # Its output is written as its readers take it: a reader that does
            # not read must not stop the shim.
            relay.when_drained(done) if relay else done()
            return
        if self.exit_code is not None:
            return  # the VM is being stopped already (a SIGKILL while paused)
        self.exit_code = code
        self.move(self.own, Status.STOPPED, code)
        self.link.send(Msg.SHUTDOWN)
        self.shutdown_deadline = time.monotonic() + SHUTDOWN_TIMEOUT

    def _member_ended(self, m: Guest, code: int) -> None:
        """A pod's next container is over: its light shim learns the status, its files go."""
        if Status(m.state.status) is not Status.STOPPED:
            self.move(m, Status.STOPPED, code)
        if m.ended:
            m.ended(code)
            m.ended = None
        from runv.sandbox import pod

        pod.forget(self, m)

    def member(self, container_id: str) -> Guest | None:
        return next((m for m in self.members.values() if m.state.id == container_id), None)

    def guest(self, container_id: str | None) -> Guest:
        """The container a request names: this sandbox's own, or one of its pod's."""
        if not container_id or container_id == self.state.id:
            return self.own
        m = self.member(container_id)
        if m is None:
            raise errors.NotFound(f"container {container_id} is not in this sandbox")
        return m

    # --- what the control socket asks -------------------------------------------------

    def _agent_reply(self, answer: Answer, on_ok: Callable[[P.Frame], dict[str, Any]]) -> Callable[[P.Frame], None]:
        def cb(f: P.Frame) -> None:
            if f.type == Msg.ERROR:
                answer(errors.to_wire(agent_error(f)))
            else:
                answer(on_ok(f))
        return cb

    def start(self, c: Guest, answer: Answer, fail: Fail) -> None:
        status = Status(c.state.status)
        if not status.can_start():
            answer(errors.to_wire(errors.InvalidState(
                f"cannot start container {c.state.id} in {status.value} state")))
            return
        try:
            self.hook(c, "startContainer")
        except RunvError as e:
            answer(errors.to_wire(e))
            return

        def started(f: P.Frame) -> dict[str, Any]:
            if c.state.status == Status.CREATED:  # not if the init exited meanwhile
                self.move(c, Status.RUNNING)
            self.hook(c, "poststart", fatal=False)
            return {"ok": True}
        self.link.request(Msg.START, c.stream, b"", self._agent_reply(answer, started), fail)

    def ps(self, c: Guest, answer: Answer, fail: Fail) -> None:
        self.link.request(Msg.PS, c.stream, b"", self._agent_reply(
            answer, lambda f: {"pids": P.parse_u32_list(f.payload)}), fail)

    def kill(self, signo: int, all_: bool, stream: int, answer: Answer, fail: Fail) -> None:
        """Signal a process of the container. A paused guest cannot take the
        request: SIGKILL of the init (or of all) stops the VM at once, as the
        guest would have, and the container ends with 137; other signals wait
        until resume, as a frozen process's do. A SIGKILL of the init that the
        agent does not acknowledge in time stops the VM too."""
        if not 1 <= signo <= 64:
            answer(errors.to_wire(RunvError(f"invalid signal {signo}")))
            return
        fatal = signo == signal.SIGKILL and stream == INIT  # the sandbox's own container

        def stop_vm() -> None:
            self._stop_vm(KILLED, "SIGKILL")
            answer({"ok": True})
        if self.state.status == Status.PAUSED:
            if fatal:
                stop_vm()
            elif len(self.paused_signals) < MAX_PAUSED_SIGNALS:
                self.paused_signals.add((stream, signo, all_))
                answer({"ok": True})
            else:
                answer(errors.to_wire(RunvError("too many signals pending for a paused container")))
            return
        def signalled(f: P.Frame) -> dict[str, Any]:
            if fatal and self.exit_code is None and self.shutdown_deadline is None:
                # The init is killed: if the guest cannot report its end (a fork
                # bomb's processes still hold its output), the VM stops anyway.
                self.shutdown_deadline = time.monotonic() + KILL_GRACE
                self.killed = True
            return {"ok": True}
        self.link.request(Msg.SIGNAL, stream, P.signal_payload(signo, all_),
                          self._agent_reply(answer, signalled), fail,
                          stop_vm if fatal else None)

    def _stop_vm(self, code: int, why: str) -> None:
        """End the container with `code` by killing its VM."""
        log.debug(f"container {self.state.id}: stopping the VM: {why}")
        if self.exit_code is None:
            self.exit_code = code
            self.move(self.own, Status.STOPPED, code)
        self.vm.kill()

    def exec(self, c: Guest, process: dict[str, Any], stdio_names: list[str], fds: list[int],
             answer: Answer, fail: Fail) -> None:
        """Run one more process in container `c` on a new stream, its stdio on `fds`."""
        from runv.agent.records import exec_payload, rec_u32

        try:
            payload = exec_payload(process)  # checked by `runv exec` too; this shim trusts no client
            if c is not self.own:
                payload += rec_u32(P.Tag.CONTAINER, c.stream)
        except Exception:
            for fd in fds:
                os.close(fd)
            raise
        relay = Relay.for_fds(stdio_names, fds, bool(process.get("terminal")))
        stream = self.new_stream()

        def failed(why: str) -> None:
            relay.close()
            fail(why)

        def cb(f: P.Frame) -> None:
            if f.type == Msg.ERROR:
                relay.close()
                answer(errors.to_wire(agent_error(f)))
                return
            pid = P.parse_u32(f.payload)
            if request.expired:
                # Too late: the client was told it failed. The process must not
                # run unseen; its output goes nowhere until it is killed.
                self.attach(stream, Relay(None, None, None))
                self.link.request(Msg.SIGNAL, stream, P.signal_payload(signal.SIGKILL), lambda f: None)
                return
            self.attach(stream, relay)
            self.waiters[stream] = lambda code: answer({"exit": code})
            answer({"ok": True, "pid": pid, "stream": stream}, close=False)
        request = self.link.request(Msg.EXEC, stream, payload, cb, failed)

    def new_stream(self) -> int:
        stream = self.next_stream
        self.next_stream += 1
        return stream

    def pause(self, pause: bool) -> dict[str, Any]:
        """Freeze or thaw the whole VM (QMP stop/cont)."""
        from runv.qemu.qmp import QMP

        to = Status.PAUSED if pause else Status.RUNNING
        if not Status(self.state.status).can_move(to):
            return errors.to_wire(errors.InvalidState(
                f"cannot {'pause' if pause else 'resume'} container {self.state.id} in {self.state.status} state"))
        if self.qmp is None:
            self.qmp = QMP(self.vm.qmp)
        try:
            self.qmp.execute("stop" if pause else "cont")
        except (QemuError, OSError) as e:
            return errors.to_wire(e if isinstance(e, QemuError) else QemuError(str(e)))
        self.move(self.own, to)
        if not pause:
            for stream, signo, all_ in sorted(self.paused_signals):
                self.link.request(Msg.SIGNAL, stream, P.signal_payload(signo, all_), lambda f: None)
            self.paused_signals.clear()
            if self.paused_update is not None:
                self.link.request(Msg.UPDATE, INIT, self.paused_update, lambda f: None)
                self.paused_update = None
        return {"ok": True}

    def update(self, c: Guest, change: dict[str, Any], answer: Answer, fail: Fail) -> None:
        """`runv update`: new limits for the host cgroup (the VM) and the guest
        cgroup (the container). Checked whole before anything is written; if
        the guest refuses, the host cgroup goes back to what it was. A paused
        guest gets its limits on resume."""
        from runv.agent.records import update_payload
        from runv.host import cgroups
        from runv.oci import resources

        if Status(c.state.status) not in (Status.CREATED, Status.RUNNING, Status.PAUSED):
            answer(errors.to_wire(errors.InvalidState(
                f"cannot update container {c.state.id} in {c.state.status} state")))
            return
        old = c.state.resources or {}
        new = resources.merge_update(old, change)
        cgroups.check(new)  # any JSON: one CgroupError, before anything is written
        if c is not self.own:  # not capped: a pod's next container's VM is the pod's
            self._update_member(c, new, update_payload(new), answer, fail)
            return
        payload = update_payload(new, self._guest_memory_mb((new.get("memory") or {}).get("limit")))
        floor = max(self.state.guest_memory_mb - resources.GUEST_OVERHEAD_MB, 0) * 2**20
        dirs = [d for d in self.state.cgroup.split(":") if d]
        try:
            cgroups.update(dirs, new, floor)
        except RunvError as e:
            self._restore_host(dirs, old)
            answer(errors.to_wire(e))
            return
        self._balloon((new.get("memory") or {}).get("limit"))

        def done(ok: bool) -> None:
            if ok:
                self.state.resources = new
                self.host_floor = floor
                self._write_state(self.own)
            else:
                self._balloon((old.get("memory") or {}).get("limit"))
                self._restore_host(dirs, old)

        def cb(f: P.Frame) -> None:
            done(f.type != Msg.ERROR)
            answer(errors.to_wire(agent_error(f)) if f.type == Msg.ERROR else {"ok": True})

        def failed(why: str) -> None:
            done(False)
            fail(why)
        if self.state.status == Status.PAUSED:
            self.paused_update = payload
            done(True)
            answer({"ok": True})
            return
        self.link.request(Msg.UPDATE, INIT, payload, cb, failed)

    def _guest_memory_mb(self, limit: Any) -> int:
        """What the guest will have for this limit (the balloon's target less the
        page tables): the container's cgroup is capped below it. 0: not known."""
        from runv.oci.resources import balloon_target_mb, memmap_mb

        ram = self.state.guest_ram_mb
        return balloon_target_mb(limit, ram) - memmap_mb(ram) if ram else 0

    def _update_member(self, c: Guest, new: dict[str, Any], payload: bytes, answer: Answer, fail: Fail) -> None:
        """A pod's next container: its limits are its guest cgroup's alone (the VM's are the pod's)."""
        if self.state.status == Status.PAUSED:
            answer(errors.to_wire(errors.InvalidState(f"the pod of container {c.state.id} is paused")))
            return

        def cb(f: P.Frame) -> None:
            if f.type == Msg.ERROR:
                answer(errors.to_wire(agent_error(f)))
                return
            c.state.resources = new
            self._write_state(c)
            answer({"ok": True})
        self.link.request(Msg.UPDATE, c.stream, payload, cb, fail)

    def _pod_limit(self) -> int:
        """What a pod's containers' memory limits add up to (runv.oci.resources.pod_memory_limit)."""
        from runv.oci.resources import pod_memory_limit

        def limit(c: Guest) -> Any:
            return ((c.state.resources or {}).get("memory") or {}).get("limit")
        return pod_memory_limit(limit(self.own), [limit(m) for m in self.members.values()])

    def grow_pod(self) -> bytes:
        """Before a next container is created: the guest gets what the pod's
        limits now add up to, and POD_CGROUP records cap the pod's next
        containers together below what the guest has by then. Not below what
        it will have: the balloon deflates on the guest's time, and a cap above
        the guest's memory would let a container starve it meanwhile."""
        from runv.agent.records import pod_cgroup_records
        from runv.oci.resources import balloon_target_mb, memmap_mb

        limit, ram = self._pod_limit(), self.state.guest_ram_mb
        if not ram:
            return b""
        self._balloon(limit)
        want = balloon_target_mb(limit, ram)
        deadline = time.monotonic() + BALLOON_SETTLE_TIMEOUT
        has = self._balloon_actual_mb()
        while has is not None and has < want and time.monotonic() < deadline:
            time.sleep(0.05)
            has = self._balloon_actual_mb()
        return pod_cgroup_records(min(want, has or want) - memmap_mb(ram))

    def size_pod(self) -> None:
        """A next container is gone: the pod's cap comes down first, then the guest's memory."""
        from runv.agent.records import pod_cgroup_records

        limit = self._pod_limit()
        if self.exit_code is None and self.state.status != Status.PAUSED:
            self.link.request(Msg.UPDATE, INIT, pod_cgroup_records(self._guest_memory_mb(limit)), lambda f: None)
        self._balloon(limit)

    def _balloon_actual_mb(self) -> int | None:
        """What the guest has now (QMP query-balloon), None if QEMU cannot say."""
        try:
            return int(self.qmp.execute("query-balloon")["actual"]) // 2**20 if self.qmp else None
        except (QemuError, OSError, KeyError, TypeError, ValueError):
            return None

    def _balloon(self, limit: Any) -> None:
        """The guest's memory follows the limit, within the VM's RAM (the balloon
        holds the rest). The host cgroup keeps the most the guest ever had (its
        floor): a guest that does not give pages back is not killed for them."""
        from runv.oci.resources import GUEST_OVERHEAD_MB, balloon_target_mb
        from runv.qemu.qmp import QMP

        if not self.state.guest_ram_mb:
            return  # started by a runv without a balloon
        target = balloon_target_mb(limit, self.state.guest_ram_mb)
        if isinstance(limit, int) and limit > 0 and limit // 2**20 + GUEST_OVERHEAD_MB > self.state.guest_ram_mb:
            log.error(f"container {self.state.id}: a memory limit of {limit} bytes is more than the VM's "
                      f"RAM ({self.state.guest_ram_mb} MiB) can give: the guest gets all of it")
        try:
            if self.qmp is None:
                self.qmp = QMP(self.vm.qmp)
            if self.state.shared_ram and target < (self._balloon_actual_mb() or 0):
                # QEMU 7.2 cannot give back pages of a private file mapping (it would
                # punch holes in the shared, sealed RAM, and fails): the guest
                # cgroup's cap alone holds the container to its new limit.
                return
            self.qmp.execute("balloon", value=target * 2**20)
        except (QemuError, OSError) as e:
            log.error(f"container {self.state.id}: the balloon did not take {target} MiB: {e}")
            return
        self.state.guest_memory_mb = max(self.state.guest_memory_mb, target)

    def _restore_host(self, dirs: list[str], old: dict[str, Any]) -> None:
        """The host cgroup as the last update (or create) left it."""
        from runv.host import cgroups

        try:
            cgroups.update(dirs, old, self.host_floor)
        except RunvError as e:
            log.error(f"container {self.state.id}: cannot restore the host cgroup's limits: {e}")

    def window_changed(self) -> None:
        relay = self.relays.get(INIT)
        if relay and relay.terminal and relay.stdin is not None:
            from runv.host.console import winsize

            rows, cols = winsize(relay.stdin)
            if rows and cols:
                self.link.send(Msg.WINSIZE, INIT, P.winsize_payload(rows, cols))

    def hook(self, c: Guest, kind: str, fatal: bool = True) -> None:
        from runv.host import hooks

        st = c.state
        state = {"ociVersion": "1.0.2", "id": st.id, "status": st.status, "pid": st.pid,
                 "bundle": st.bundle, "annotations": st.annotations}
        if fatal:
            hooks.run(st.hooks, kind, state, st.bundle)
        else:
            hooks.run_warn(st.hooks, kind, state, st.bundle)

    # --- the main loop ------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.link.next_deadline(), self.shutdown_deadline) if d is not None]
        return min(deadlines, default=None)

    def expire(self, now: float) -> None:
        for _ in self.link.expire(now):
            log.error(f"container {self.state.id}: the guest agent did not answer "
                      f"within {REQUEST_TIMEOUT:.0f} s")

    def run(self) -> int:
        """Serve until the VM is down; the container's exit status."""
        self.loop.watch(self.vm.pidfd, selectors.EVENT_READ, lambda m: None)
        while True:
            self.loop.run_once(self.next_deadline())
            if self.vm.exited():
                break
            now = time.monotonic()
            self.expire(now)
            if self.shutdown_deadline is not None and now >= self.shutdown_deadline:
                self.vm.kill()
                break
        log.debug("the VM is down")
        self.link.fail_all("the VM stopped")
        for relay in self.relays.values():
            relay.flush()
        if self.exit_code is None and self.killed:
            self.exit_code = KILLED
            self.move(self.own, Status.STOPPED, KILLED)
        if self.exit_code is None:
            if not self.link.broken:
                log.error(f"container {self.state.id}: the VM stopped: {self.vm.failure()}")
            self.exit_code = QEMU_DIED
            self.move(self.own, Status.STOPPED, QEMU_DIED)
        for m in list(self.members.values()):  # the pod's VM went with its first container
            self._member_ended(m, QEMU_DIED)
        return self.exit_code

    def move(self, c: Guest, to: Status, exit_code: int | None = None) -> None:
        """A container's status changes only here, and only as runv.status allows."""
        c.state.move(to, exit_code)
        self._write_state(c)

    def _write_state(self, c: Guest) -> None:
        if not c.written:
            return
        try:
            c.sd.write(c.state)
        except OSError:
            pass  # deleted under us by `delete --force`
