"""The per-container shim: a long-lived process whose pid is the container's pid.

It owns QEMU (its child) and the agent channel, relays the init's stdio, serves
start/kill/ps/pause/resume on a control socket in the state dir, and exits with
the container's status. `runv create` forks it; it reports back on a sync pipe.
"""
from __future__ import annotations

import collections
import errno
import json
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, NoReturn

from runv import log
from runv.agent import protocol as P
from runv.agent.protocol import Msg
from runv.errors import AgentError, QemuError, RunvError
from runv.guest_text import printable
from runv.host import proc
from runv.sandbox.client import REQUEST_TIMEOUT
from runv.sandbox.relay import Relay
from runv.state import State, StateDir
from runv.status import Status

BOOT_TIMEOUT = 120.0      # TCG on a busy 2-core host can be slow
SHUTDOWN_TIMEOUT = 5.0
QEMU_DIED = 255
KILLED = 128 + signal.SIGKILL
RECV_SIZE = 65536
ACK_BATCH = 65536         # ACKs are queued for the guest only while outq is shorter

Reply = Callable[[P.Frame], None]


@dataclass(eq=False)
class Request:
    """One request to the agent: its frame, what to do with the reply, and how
    to tell the client it failed. Replies are matched by order, so a request
    that outlived its deadline keeps its place until its reply comes."""
    frame: bytes
    on_reply: Reply
    fail: Callable[[str], None]
    deadline: float
    on_expire: Callable[[], None] | None = None
    expired: bool = False


class Shim:
    def __init__(self, sd: StateDir, state: State, vm: Any) -> None:
        self.sd = sd
        self.state = state
        self.vm = vm
        self.sel = selectors.DefaultSelector()
        self.decoder = P.Decoder()
        self.outq = bytearray()
        self.acks: dict[tuple[int, int], int] = {}  # (stream, which) -> bytes to ACK
        self.requests: collections.deque[Request] = collections.deque()
        self.inflight: Request | None = None
        self.relays: dict[int, Relay] = {}
        self.exited: set[int] = set()
        self.paused_signals: set[tuple[int, int, bool]] = set()
        self.broken: str | None = None  # why the guest was cut off
        self.waiters: dict[int, Callable[[int], None]] = {}
        self.next_stream = 2
        self.nics: list[Any] = []
        self.exit_code: int | None = None
        self.shutdown_deadline: float | None = None
        self.control: socket.socket | None = None
        self.qmp: Any = None
        self.vm.agent.setblocking(False)

    # --- the agent link ---------------------------------------------------

    def send(self, msg: Msg, stream: int = 0, payload: bytes = b"") -> None:
        self.outq += P.encode(msg, stream, payload)
        self._watch_agent()

    def ack(self, stream: int, which: int, nbytes: int) -> None:
        """Acknowledge guest output; ACKs of one stream are merged until the port
        takes them, so a guest that stops reading cannot grow outq with them."""
        self.acks[stream, which] = self.acks.get((stream, which), 0) + nbytes
        self._watch_agent()

    def request(self, msg: Msg, stream: int, payload: bytes, on_reply: Reply,
                fail: Callable[[str], None] = lambda reason: None,
                on_expire: Callable[[], None] | None = None) -> Request:
        req = Request(P.encode(msg, stream, payload), on_reply, fail,
                      time.monotonic() + REQUEST_TIMEOUT, on_expire)
        self.requests.append(req)
        self._next_request()
        return req

    def _next_request(self) -> None:
        if self.inflight is None and self.requests and not self.broken:
            self.inflight = self.requests.popleft()
            self.outq += self.inflight.frame
            self._watch_agent()

    def _expire_requests(self, now: float) -> None:
        """Answer every request past its deadline: the agent is stuck (or the VM
        paused). The expired one in flight still owns the next reply."""
        why = f"the guest agent did not answer within {REQUEST_TIMEOUT:.0f} s"
        late = [r for r in self.requests if now >= r.deadline]
        if self.inflight and not self.inflight.expired and now >= self.inflight.deadline:
            self.inflight.expired = True
            late.insert(0, self.inflight)
        for req in late:
            log.error(f"container {self.state.id}: {why}")
            if req in self.requests:
                self.requests.remove(req)
            if req.on_expire:
                req.on_expire()  # may answer the client itself
            req.fail(why)

    def _next_deadline(self) -> float | None:
        deadlines = [r.deadline for r in self.requests]
        if self.inflight and not self.inflight.expired:
            deadlines.append(self.inflight.deadline)
        if self.shutdown_deadline is not None:
            deadlines.append(self.shutdown_deadline)
        return min(deadlines, default=None)

    def _watch_agent(self) -> None:
        if self.broken:
            return
        want_write = self.outq or self.acks
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
        self._set(self.vm.agent, events, self._on_agent)

    def _on_agent(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush_agent()
        if mask & selectors.EVENT_READ:
            try:
                data = self.vm.agent.recv(RECV_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._set(self.vm.agent, 0, None)
                return
            self.receive(data)

    def _flush_agent(self) -> None:
        if self.acks and len(self.outq) < ACK_BATCH:
            for (stream, which), n in self.acks.items():
                self.outq += P.encode(Msg.ACK, stream, P.ack_payload(which, n))
            self.acks.clear()
        if self.outq:
            try:
                n = self.vm.agent.send(self.outq)
                del self.outq[:n]
            except BlockingIOError:
                pass
            except OSError:
                self.outq.clear()
        self._watch_agent()

    def receive(self, data: bytes) -> None:
        """Bytes from the guest. It is not trusted: whatever breaks the protocol
        cuts it off (see _protocol_error); nothing it sends raises here."""
        if self.broken:
            return
        try:
            for frame in self.decoder.feed(data):
                self._dispatch(frame)
                if self.broken:
                    return
        except P.ProtocolError as e:
            self._protocol_error(str(e))
        except Exception as e:  # noqa: BLE001 - a bug must not leave a hostile guest running
            self._protocol_error(f"internal error: {type(e).__name__}: {e}")

    def take(self, frames: list[P.Frame]) -> None:
        """Frames that boot() read past the last reply it waited for."""
        try:
            for frame in frames:
                if not self.broken:
                    self._dispatch(frame)
        except P.ProtocolError as e:
            self._protocol_error(str(e))
        except Exception as e:  # noqa: BLE001 - as in receive()
            self._protocol_error(f"internal error: {type(e).__name__}: {e}")

    def _protocol_error(self, reason: str) -> None:
        """Stop the VM: a guest that breaks the protocol is not talked to again.
        The container ends as if QEMU died (unless its init had exited)."""
        if self.broken:
            return
        self.broken = printable(reason)
        log.error(f"container {self.state.id}: the guest agent broke the protocol "
                  f"({self.broken}): stopping the VM")
        self._set(self.vm.agent, 0, None)
        self.outq.clear()
        self.acks.clear()
        self._fail_requests("the guest agent broke the protocol")
        self.vm.kill()

    def _fail_requests(self, why: str) -> None:
        pending = [self.inflight] if self.inflight and not self.inflight.expired else []
        pending += self.requests
        self.inflight = None
        self.requests.clear()
        for req in pending:
            req.fail(why)

    def _dispatch(self, f: P.Frame) -> None:
        if f.type in (Msg.OK, Msg.ERROR):
            self._reply(f)
        elif f.type in (Msg.STDOUT, Msg.STDERR):
            self._live_relay(f).output(1 if f.type == Msg.STDOUT else 2, f.payload)
        elif f.type == Msg.ACK:
            which, nbytes = P.parse_ack(f.payload)
            relay = self.relays.get(f.stream)
            if relay:
                relay.acked(which, nbytes)
            elif not 2 <= f.stream < self.next_stream:
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

    def _reply(self, f: P.Frame) -> None:
        req = self.inflight
        if req is None:
            raise P.ProtocolError(f"{f.type.name} on stream {f.stream} with no request in flight")
        self.inflight = None
        try:
            req.on_reply(f)
        except P.ProtocolError:
            req.fail("the guest agent sent a malformed reply")
            raise
        self._next_request()

    def _exited(self, stream: int, code: int) -> None:
        log.debug(f"process {stream} exited with {code}")
        relay = self.relays.get(stream)
        if relay:
            relay.finish()
        if stream != 1:
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
        self._move(Status.STOPPED, code)
        self.send(Msg.SHUTDOWN)
        self.shutdown_deadline = time.monotonic() + SHUTDOWN_TIMEOUT

    # --- selector plumbing ------------------------------------------------

    def _set(self, fileobj: Any, events: int, handler: Callable[[int], None] | None) -> None:
        """Watch `fileobj` for `events` (0 = stop watching)."""
        try:
            key = self.sel.get_key(fileobj)
        except (KeyError, ValueError):
            key = None
        if not events:
            if key:
                self.sel.unregister(fileobj)
        elif key:
            self.sel.modify(fileobj, events, handler)
        else:
            self.sel.register(fileobj, events, handler)

    # --- the control socket -------------------------------------------------

    def serve_control(self) -> None:
        from runv.sandbox.client import SOCKET

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        os.chdir(self.sd.path)  # bind relatively: the absolute path may be too long
        s.bind(SOCKET)
        s.listen(16)
        self.control = s
        self._set(s, selectors.EVENT_READ, self._on_accept)

    def _on_accept(self, mask: int) -> None:
        conn, _ = self.control.accept()
        conn.settimeout(5.0)
        fds: list[int] = []
        try:
            data = b""
            while not data.endswith(b"\n"):
                chunk, more_fds, _, _ = socket.recv_fds(conn, 65536, 8)
                fds += more_fds
                if not chunk:
                    break
                data += chunk
            req = json.loads(data)
        except (OSError, ValueError):
            conn.close()
            for fd in fds:
                os.close(fd)
            return
        try:
            self._handle(conn, req, fds)
        except Exception as e:  # noqa: BLE001 - a bad request must never take the container down
            log.error(f"control request refused: {type(e).__name__}: {e}")
            message = str(e) if isinstance(e, RunvError) else f"bad request: {type(e).__name__}: {e}"
            try:
                conn.sendall(json.dumps({"error": message, "kind": type(e).__name__}).encode() + b"\n")
            except OSError:
                pass
            conn.close()

    def _handle(self, conn: socket.socket, req: dict[str, Any], fds: list[int]) -> None:
        op = req.get("op")
        closed = False

        def answer(reply: dict[str, Any], close: bool = True) -> None:
            nonlocal closed
            if closed:
                return  # the client has had its answer (a timeout) already
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass
            if close:
                conn.close()
                closed = True

        def fail(why: str) -> None:
            answer({"error": why, "kind": "AgentError"})

        def agent_reply(on_ok: Callable[[P.Frame], dict[str, Any]]) -> Reply:
            def cb(f: P.Frame) -> None:
                if f.type == Msg.ERROR:
                    fail(printable(P.parse_error(f.payload)[1]))
                else:
                    answer(on_ok(f))
            return cb

        status = Status(self.state.status)
        if op != "exec" or self.exit_code is not None or status is Status.PAUSED:
            for fd in fds:
                os.close(fd)
        try:
            if self.exit_code is not None and op in ("start", "kill", "ps", "pause", "resume", "exec"):
                answer({"error": "container not running", "kind": "InvalidState"})
            elif status is Status.PAUSED and op in ("start", "ps", "exec"):
                answer({"error": f"container {self.state.id} is paused", "kind": "InvalidState"})
            elif op == "start":
                if not status.can_start():
                    answer({"error": f"cannot start container {self.state.id} in {status.value} state",
                            "kind": "InvalidState"})
                    return
                try:
                    self._hook("startContainer")
                except RunvError as e:
                    answer({"error": str(e), "kind": "RunvError"})
                    return

                def started(f: P.Frame) -> dict[str, Any]:
                    if self.state.status == Status.CREATED:  # not if the init exited meanwhile
                        self._move(Status.RUNNING)
                    self._hook("poststart", fatal=False)
                    return {"ok": True}
                self.request(Msg.START, 1, b"", agent_reply(started), fail)
            elif op == "exec":
                self._exec(req, fds, answer, fail)
            elif op == "kill":
                signo, stream = req.get("signal"), req.get("stream", 1)
                if not (_is_int(signo) and 1 <= signo <= 64 and _is_int(stream) and 1 <= stream < 2**32):
                    answer({"error": f"invalid signal {signo!r}", "kind": "InvalidArgument"})
                    return
                self._kill(signo, bool(req.get("all")), stream, answer, fail)
            elif op == "ps":
                self.request(Msg.PS, 1, b"", agent_reply(
                    lambda f: {"pids": P.parse_u32_list(f.payload)}), fail)
            elif op in ("pause", "resume"):
                answer(self._pause(op == "pause"))
            else:
                answer({"error": f"unknown request {op!r}", "kind": "RunvError"})
        except (KeyError, TypeError, ValueError, P.ProtocolError) as e:
            answer({"error": f"bad {op} request: {e}", "kind": "RunvError"})

    def _kill(self, signo: int, all_: bool, stream: int, answer: Callable[..., None],
              fail: Callable[[str], None]) -> None:
        """Signal a process of the container. A paused guest cannot take the
        request: SIGKILL of the init (or of all) stops the VM at once, as the
        guest would have, and the container ends with 137; other signals wait
        until resume, as a frozen process's do. A SIGKILL of the init that the
        agent does not acknowledge in time stops the VM too."""
        if not 1 <= signo <= 64:
            answer({"error": f"invalid signal {signo}", "kind": "RunvError"})
            return
        fatal = signo == signal.SIGKILL and (stream == 1 or all_)

        def stop_vm() -> None:
            self._stop_vm(KILLED, "SIGKILL")
            answer({"ok": True})
        if self.state.status == Status.PAUSED:
            if fatal:
                stop_vm()
            elif len(self.paused_signals) < 1024:
                self.paused_signals.add((stream, signo, all_))
                answer({"ok": True})
            else:
                answer({"error": "too many signals pending for a paused container", "kind": "RunvError"})
            return

        def replied(f: P.Frame) -> None:
            if f.type == Msg.ERROR:
                fail(printable(P.parse_error(f.payload)[1]))
            else:
                answer({"ok": True})
        self.request(Msg.SIGNAL, stream, P.signal_payload(signo, all_), replied, fail,
                     stop_vm if fatal else None)

    def _stop_vm(self, code: int, why: str) -> None:
        """End the container with `code` by killing its VM."""
        log.debug(f"container {self.state.id}: stopping the VM: {why}")
        if self.exit_code is None:
            self.exit_code = code
            self._move(Status.STOPPED, code)
        self.vm.kill()

    def _exec(self, req: dict[str, Any], fds: list[int], answer: Callable[..., None],
              fail: Callable[[str], None]) -> None:
        from runv.agent.records import exec_payload

        process = req["process"]
        try:
            payload = exec_payload(process)  # checked by `runv exec` too; this shim trusts no client
        except Exception:
            for fd in fds:
                os.close(fd)
            raise
        stdio = dict(zip(req.get("stdio", []), fds))
        if process.get("terminal"):
            pty = stdio.get("pty")
            relay = Relay(pty, os.dup(pty) if pty is not None else None, None, terminal=True)
        else:
            relay = Relay(stdio.get("stdin"), stdio.get("stdout"), stdio.get("stderr"))
        stream = self.next_stream
        self.next_stream += 1

        def failed(why: str) -> None:
            relay.close()
            fail(why)

        def cb(f: P.Frame) -> None:
            if f.type == Msg.ERROR:
                failed(printable(P.parse_error(f.payload)[1]))
                return
            pid = P.parse_u32(f.payload)
            if request.expired:
                # Too late: the client was told it failed. The process must not
                # run unseen; its output goes nowhere until it is killed.
                self.relays[stream] = Relay(None, None, None)
                self.relays[stream].attach(self, stream)
                self.request(Msg.SIGNAL, stream, P.signal_payload(signal.SIGKILL), lambda f: None)
                return
            self.relays[stream] = relay
            self.waiters[stream] = lambda code: answer({"exit": code})
            relay.attach(self, stream)
            answer({"ok": True, "pid": pid, "stream": stream}, close=False)
        request = self.request(Msg.EXEC, stream, payload, cb, failed)

    def _hook(self, kind: str, fatal: bool = True) -> None:
        from runv.host import hooks

        state = {"ociVersion": "1.0.2", "id": self.state.id, "status": self.state.status,
                 "pid": self.state.pid, "bundle": self.state.bundle,
                 "annotations": self.state.annotations}
        if fatal:
            hooks.run(self.state.hooks, kind, state, self.state.bundle)
        else:
            hooks.run_warn(self.state.hooks, kind, state, self.state.bundle)

    def window_changed(self) -> None:
        relay = self.relays.get(1)
        if relay and relay.terminal and relay.stdin is not None:
            from runv.host.console import winsize

            rows, cols = winsize(relay.stdin)
            if rows and cols:
                self.send(Msg.WINSIZE, 1, P.winsize_payload(rows, cols))

    def _pause(self, pause: bool) -> dict[str, Any]:
        from runv.qemu.qmp import QMP

        to = Status.PAUSED if pause else Status.RUNNING
        if not Status(self.state.status).can_move(to):
            return {"error": f"cannot {'pause' if pause else 'resume'} container {self.state.id} "
                             f"in {self.state.status} state", "kind": "InvalidState"}
        if self.qmp is None:
            self.qmp = QMP(self.vm.qmp)
        try:
            self.qmp.execute("stop" if pause else "cont")
        except (QemuError, OSError) as e:
            return {"error": str(e), "kind": "QemuError"}
        self._move(to)
        if not pause:
            for stream, signo, all_ in sorted(self.paused_signals):
                self.request(Msg.SIGNAL, stream, P.signal_payload(signo, all_), lambda f: None)
            self.paused_signals.clear()
        return {"ok": True}

    # --- the main loop ------------------------------------------------------

    def run(self) -> int:
        self._set(self.vm.pidfd, selectors.EVENT_READ, lambda m: None)
        while True:
            deadline = self._next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            for key, mask in self.sel.select(timeout):
                if key.data:
                    key.data(mask)
            if self.vm.exited():
                break
            now = time.monotonic()
            self._expire_requests(now)
            if self.shutdown_deadline is not None and now >= self.shutdown_deadline:
                self.vm.kill()
                break
        log.debug("the VM is down")
        self._fail_requests("the VM stopped")
        for relay in self.relays.values():
            relay.flush()
        if self.exit_code is None:
            if not self.broken:
                log.error(f"container {self.state.id}: the VM stopped: {self.vm.failure()}")
            self.exit_code = QEMU_DIED
            self._move(Status.STOPPED, QEMU_DIED)
        return self.exit_code

    def _move(self, to: Status, exit_code: int | None = None) -> None:
        """The container's status changes only here, and only as runv.status allows."""
        self.state.move(to, exit_code)
        self._save()

    def _save(self) -> None:
        try:
            self.sd.write(self.state)
        except OSError:
            pass  # deleted under us by `delete --force`


# --- boot: everything up to "created" ------------------------------------------

def await_frame(vm: Any, decoder: P.Decoder, timeout: float) -> P.Frame:
    """Block until the agent sends a frame; fail if QEMU dies or time runs out."""
    deadline = time.monotonic() + timeout
    pending: list[P.Frame] = getattr(decoder, "pending", [])
    while not pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise QemuError(f"the guest agent did not answer within {timeout:.0f} s "
                            f"(last console line: {vm.failure()})")
        sel = selectors.DefaultSelector()
        sel.register(vm.agent, selectors.EVENT_READ)
        sel.register(vm.pidfd, selectors.EVENT_READ)
        ready = {k.fileobj for k, _ in sel.select(left)}
        sel.close()
        if vm.agent in ready:
            data = vm.agent.recv(RECV_SIZE)
            if data:
                try:
                    pending.extend(decoder.feed(data))
                except P.ProtocolError as e:
                    raise QemuError(f"the guest agent broke the protocol: {printable(str(e))}") from None
                continue
        if vm.pidfd in ready or vm.agent in ready:
            vm.wait(2.0)
            raise QemuError(f"the VM stopped while starting: {vm.failure()}")
    decoder.pending = pending  # type: ignore[attr-defined]
    return pending.pop(0)


def expect_ok(vm: Any, decoder: P.Decoder, timeout: float) -> P.Frame:
    while True:
        f = await_frame(vm, decoder, timeout)
        if f.type == Msg.OK:
            return f
        if f.type == Msg.ERROR:
            try:
                errno_, msg = P.parse_error(f.payload)
            except P.ProtocolError as e:
                raise QemuError(f"the guest agent broke the protocol: {e}") from None
            raise AgentError(printable(msg), errno_)


def boot(sd: StateDir, state: State, bundle: Any, stdio: Relay, host_netns: int | None,
         fresh_netns: bool) -> Shim:
    from runv.agent.records import create_payload
    from runv.host import hooks
    from runv.oci import mounts, resources
    from runv.oci.config import explained, validate
    from runv.qemu import assets
    from runv.qemu import vm as qemu_vm
    from runv.qemu.accel import choose
    from runv.qemu.cmdline import Machine
    from runv.sandbox import staging

    config = bundle.config
    # With hooks to run, validate first: a hook must not see an invalid config.
    # Otherwise validating (and importing jsonschema) overlaps the VM's boot.
    early_validation = bool(state.hooks)
    if early_validation:
        validate(config)
    size = explained(config, resources.guest_size, config)
    plan = explained(config, mounts.plan, config, bundle.path)
    # Built before the VM starts: a config too big for one frame fails here.
    create = explained(config, create_payload, config, plan.records, plan.guest_dirs)
    a = assets.require()
    accel = choose(a)
    state.accel = accel.accel
    # The status these hooks see is "created", as crun and the runtime-tools suite have it.
    hook_state = {"ociVersion": config.get("ociVersion", ""), "id": state.id, "status": "created",
                  "pid": state.pid, "bundle": state.bundle, "annotations": state.annotations}
    hooks.run(state.hooks, "createRuntime", hook_state, bundle.path, host_netns)
    hooks.run(state.hooks, "prestart", hook_state, bundle.path, host_netns)
    # After the hooks: what they mounted in the rootfs or a source is exported too.
    root_ro = bool((config.get("root") or {}).get("readonly"))
    shares = staging.stage(sd.file(staging.DIRNAME), P.SHARE_ROOT_TAG, bundle.rootfs, root_ro, plan.binds)
    nics = _join_network(state, fresh_netns)
    taps: list[int] = []
    try:
        taps = _open_taps(nics)
        machine = Machine(a.qemu, a.kernel, a.initrd, accel=accel.accel,
                          memory_mb=size.memory_mb, cpus=size.cpus,
                          devices=[*shares, *(nic.device(i, fd) for i, (nic, fd) in enumerate(zip(nics, taps)))])
        log.debug(f"qemu: {' '.join(machine.argv())}")
        vm = _restore_or_boot(machine, sd)
    except BaseException:
        _leave_network(nics)
        raise
    finally:
        for fd in taps:  # QEMU holds its own
            os.close(fd)
    state.qemu_pid = vm.pid
    sd.write(state)
    try:
        if not early_validation:
            validate(config)
        decoder = P.Decoder()
        ready = await_frame(vm, decoder, BOOT_TIMEOUT)
        log.debug("agent ready")
        if ready.type != Msg.READY:
            raise QemuError(f"the guest agent sent {ready.type.name} before READY")
        version, name = P.parse_ready(ready.payload)
        if version != P.VERSION:
            raise QemuError(f"guest agent {printable(name)} speaks protocol {version}, runv speaks {P.VERSION}")
        from runv.host.network import netif_records

        for nic in nics:
            vm.agent.sendall(P.encode(Msg.NETIF, 0, netif_records(nic)))
            expect_ok(vm, decoder, BOOT_TIMEOUT)
        vm.agent.sendall(P.encode(Msg.CREATE, 1, create))
        expect_ok(vm, decoder, BOOT_TIMEOUT)
        log.debug("container created in the guest")
        hooks.run(state.hooks, "createContainer", hook_state, bundle.path, host_netns)
    except BaseException:
        vm.kill()
        _leave_network(nics)
        raise
    shim = Shim(sd, state, vm)
    shim.nics = nics
    shim.decoder = decoder
    stdio.attach(shim, 1)
    shim.relays[1] = stdio
    shim.take(getattr(decoder, "pending", []))
    return shim


def _restore_or_boot(machine: Any, sd: StateDir) -> Any:
    """Restore the VM from a template of its shape (made on first use), or boot it.
    RUNV_TEMPLATES=0 always boots."""
    from runv.qemu import template
    from runv.qemu import vm as qemu_vm

    tpl = template.ensure(machine) if os.environ.get("RUNV_TEMPLATES") != "0" else None
    if tpl:
        try:
            vm = template.restore(machine, tpl, P.PORT_NAME, sd.path)
            log.debug(f"restored from {tpl}")
            return vm
        except QemuError as e:
            log.debug(f"template {tpl} failed ({e}): booting")
            template.discard(tpl, str(e))
    return qemu_vm.launch(machine, P.PORT_NAME, sd.path)


def _join_network(state: State, fresh_netns: bool) -> list[Any]:
    """The NICs of the container's own network namespace, each joined to a tap."""
    if not state.netns:
        return []  # the host's network: the VM gets no NIC (a VM cannot share it)
    if fresh_netns and not state.hooks:
        return []  # a namespace we just made, that no hook could fill: only lo
    from runv.host import network

    return network.setup()


def _open_taps(nics: list[Any]) -> list[int]:
    """An fd on each NIC's tap, for QEMU."""
    if not nics:
        return []
    from runv.host import network

    fds: list[int] = []
    try:
        for nic in nics:
            fds.append(network.open_tap(nic.tap))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _leave_network(nics: list[Any]) -> None:
    if nics:
        from runv.host import network

        network.teardown(nics)


def main(sd: StateDir, state: State, bundle: Any, console_socket: str | None, sync_fd: int) -> NoReturn:
    """The shim's life, in the forked child of `runv create`."""
    code = 1
    try:
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGTTOU, signal.SIGTTIN):
            signal.signal(sig, signal.SIG_IGN)
        _close_fds(keep={sync_fd})
        state.pid = os.getpid()
        state.pid_start = proc.start_time(state.pid)
        host_netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        fresh_netns = _network_namespace(bundle.config, state)
        _join_cgroup(bundle.config, state)
        sd.write(state)  # so that a failed create can find the cgroup to remove
        _host_namespaces(bundle.config)
        from runv.sandbox import staging

        staging.private_namespace()  # before the shares are staged, and QEMU forked
        stdio = Relay.for_init(bundle.config, console_socket)
        if console_socket:
            # The container's stdio is the pty; the engine reads create's own
            # stdout and stderr until they close, so keep none of them.
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)
        shim = boot(sd, state, bundle, stdio, host_netns, fresh_netns)
        os.close(host_netns)
        state.move(Status.CREATED)
        sd.write(state)
        shim.serve_control()
        _report(sync_fd, {"ok": True, "pid": state.pid})
        signal.signal(signal.SIGWINCH, lambda *_: shim.window_changed())
        try:
            code = shim.run()
        finally:
            _leave_network(shim.nics)
    except RunvError as e:
        _report(sync_fd, {"error": str(e), "kind": type(e).__name__})
    except P.ProtocolError as e:
        _report(sync_fd, {"error": f"the guest agent broke the protocol: {printable(str(e))}",
                          "kind": "QemuError"})
    except OSError as e:
        _report(sync_fd, {"error": str(e), "kind": "RunvError"})
    except BaseException as e:  # noqa: BLE001 - a shim must never die with a traceback
        _report(sync_fd, _explain(e, bundle.config))
    os._exit(code)


def _explain(e: BaseException, config: Any) -> dict[str, Any]:
    """An unexpected error before the schema check ran is most likely a malformed
    config: then the schema's message names the field, else it is a bug."""
    from runv.oci.config import validate

    try:
        validate(config)
    except RunvError as invalid:
        return {"error": str(invalid), "kind": type(invalid).__name__}
    except BaseException:  # noqa: BLE001
        pass
    return {"error": f"internal error: {type(e).__name__}: {e}", "kind": "RunvError"}


def _report(fd: int, msg: dict[str, Any]) -> None:
    try:
        os.write(fd, json.dumps(msg).encode() + b"\n")
        os.close(fd)
    except OSError:
        pass


def _close_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _join_cgroup(config: dict[str, Any], state: State) -> None:
    """Put the shim (and so QEMU, its child) in the container's host cgroup."""
    from runv.host import cgroups

    cg = cgroups.setup(config, state.id, os.getpid())
    state.cgroup = ":".join(cg.dirs)
    state.cgroup_made = cg.made


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# Namespaces the shim joins or makes, so that host-side views of the container match.
# Not the mount namespace: the shim always makes its own (runv.sandbox.staging) and never
# joins one by path (it needs the host's filesystem); a path is only checked.
HOST_NAMESPACES = ("ipc", "uts", "cgroup")


def _host_namespaces(config: dict[str, Any]) -> None:
    """The shim (the container's pid on the host) joins or makes the ipc, uts and
    cgroup namespaces the config names, so that host-side views of the container
    match. The guest makes its own for the processes inside."""
    from runv.host import syscalls

    for ns in (config.get("linux") or {}).get("namespaces") or []:
        kind = ns.get("type", "")
        if ns.get("path"):
            _check_namespace_type(ns["path"], kind)
        if kind not in HOST_NAMESPACES:
            continue
        flag = syscalls.NAMESPACE_FLAGS[kind]
        if ns.get("path"):
            try:
                syscalls.setns(ns["path"], flag)
            except OSError as e:
                raise RunvError(f"cannot join {kind} namespace {ns['path']}: {e.strerror}") from None
        else:
            syscalls.unshare(flag)


def _check_namespace_type(path: str, kind: str) -> None:
    """`path` must be a namespace of the kind named: a /proc link or a bind mount of one."""
    from runv.host import syscalls

    try:
        flag = syscalls.namespace_type(path)
    except OSError as e:
        if e.errno == errno.ENOTTY:
            raise RunvError(f"namespace path {path} is not a namespace") from None
        raise RunvError(f"namespace path {path}: {e.strerror}") from None
    want = syscalls.NAMESPACE_FLAGS.get(kind)
    if want is not None and flag != want:
        raise RunvError(f"namespace path {path} is not a {kind} namespace")


def _network_namespace(config: dict[str, Any], state: State) -> bool:
    """Join the network namespace the config names, or make a new one (then True)."""
    from runv.host import syscalls

    for ns in (config.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") != "network":
            continue
        if ns.get("path"):
            _check_namespace_type(ns["path"], "network")
            try:
                syscalls.setns(ns["path"], syscalls.CLONE_NEWNET)
            except OSError as e:
                raise RunvError(f"cannot join network namespace {ns['path']}: {e.strerror}") from None
        else:
            syscalls.unshare(syscalls.CLONE_NEWNET)
        state.netns = f"/proc/{os.getpid()}/ns/net"
        return not ns.get("path")
    return False
