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
from typing import Any, Callable, NoReturn

from runv import log, proc
from runv.agent import protocol as P
from runv.agent.protocol import Msg
from runv.errors import AgentError, QemuError, RunvError
from runv.state import State, StateDir
from runv.stdio import Relay

BOOT_TIMEOUT = 120.0      # TCG on a busy 2-core host can be slow
SHUTDOWN_TIMEOUT = 5.0
QEMU_DIED = 255

Reply = Callable[[P.Frame], None]


class Shim:
    def __init__(self, sd: StateDir, state: State, vm: Any) -> None:
        self.sd = sd
        self.state = state
        self.vm = vm
        self.sel = selectors.DefaultSelector()
        self.decoder = P.Decoder()
        self.outq = bytearray()
        self.requests: collections.deque[tuple[bytes, Reply]] = collections.deque()
        self.inflight: Reply | None = None
        self.relays: dict[int, Relay] = {}
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

    def request(self, msg: Msg, stream: int, payload: bytes, on_reply: Reply) -> None:
        self.requests.append((P.encode(msg, stream, payload), on_reply))
        self._next_request()

    def _next_request(self) -> None:
        if self.inflight is None and self.requests:
            frame, self.inflight = self.requests.popleft()
            self.outq += frame
            self._watch_agent()

    def _watch_agent(self) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outq else 0)
        self._set(self.vm.agent, events, self._on_agent)

    def _on_agent(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE and self.outq:
            try:
                n = self.vm.agent.send(self.outq)
                del self.outq[:n]
            except BlockingIOError:
                pass
            except OSError:
                self.outq.clear()
            self._watch_agent()
        if mask & selectors.EVENT_READ:
            try:
                data = self.vm.agent.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._set(self.vm.agent, 0, None)
                return
            for frame in self.decoder.feed(data):
                self._dispatch(frame)

    def _dispatch(self, f: P.Frame) -> None:
        if f.type in (Msg.OK, Msg.ERROR):
            cb, self.inflight = self.inflight, None
            if cb:
                cb(f)
            self._next_request()
        elif f.type in (Msg.STDOUT, Msg.STDERR):
            relay = self.relays.get(f.stream)
            if relay:
                relay.output(1 if f.type == Msg.STDOUT else 2, f.payload)
        elif f.type == Msg.ACK:
            relay = self.relays.get(f.stream)
            if relay:
                relay.acked(*P.parse_ack(f.payload))
        elif f.type == Msg.EXIT:
            self._exited(f.stream, P.parse_exit(f.payload))

    def _exited(self, stream: int, code: int) -> None:
        log.debug(f"process {stream} exited with {code}")
        relay = self.relays.get(stream)
        if relay:
            relay.finish()
        if stream != 1:
            if relay:
                relay.flush()
                relay.close()
                del self.relays[stream]
            waiter = self.waiters.pop(stream, None)
            if waiter:
                waiter(code)
            return
        self.exit_code = code
        self.state.status = "stopped"
        self.state.exit_code = code
        self._save()
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
        from runv.shim_client import SOCKET

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
        self._handle(conn, req, fds)

    def _handle(self, conn: socket.socket, req: dict[str, Any], fds: list[int]) -> None:
        op = req.get("op")

        def answer(reply: dict[str, Any], close: bool = True) -> None:
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass
            if close:
                conn.close()

        def agent_reply(on_ok: Callable[[P.Frame], dict[str, Any]]) -> Reply:
            def cb(f: P.Frame) -> None:
                if f.type == Msg.ERROR:
                    _, msg = P.parse_error(f.payload)
                    answer({"error": msg, "kind": "AgentError"})
                else:
                    answer(on_ok(f))
            return cb

        if op != "exec":
            for fd in fds:
                os.close(fd)
        if self.exit_code is not None and op in ("start", "kill", "ps", "pause", "resume", "exec"):
            answer({"error": "container not running", "kind": "InvalidState"})
        elif op == "start":
            try:
                self._hook("startContainer")
            except RunvError as e:
                answer({"error": str(e), "kind": "RunvError"})
                return

            def started(f: P.Frame) -> dict[str, Any]:
                self.state.status = "running"
                self._save()
                self._hook("poststart", fatal=False)
                return {"ok": True}
            self.request(Msg.START, 1, b"", agent_reply(started))
        elif op == "exec":
            self._exec(req, fds, answer)
        elif op == "kill":
            payload = P.signal_payload(int(req["signal"]), bool(req.get("all")))
            self.request(Msg.SIGNAL, int(req.get("stream", 1)), payload,
                         agent_reply(lambda f: {"ok": True}))
        elif op == "ps":
            self.request(Msg.PS, 1, b"", agent_reply(
                lambda f: {"pids": P.parse_u32_list(f.payload)}))
        elif op in ("pause", "resume"):
            answer(self._pause(op == "pause"))
        else:
            answer({"error": f"unknown request {op!r}", "kind": "RunvError"})

    def _exec(self, req: dict[str, Any], fds: list[int], answer: Callable[..., None]) -> None:
        from runv.agent.spec import process_records

        process = req["process"]
        stdio = dict(zip(req.get("stdio", []), fds))
        if process.get("terminal"):
            pty = stdio.get("pty")
            relay = Relay(pty, os.dup(pty) if pty is not None else None, None, terminal=True)
        else:
            relay = Relay(stdio.get("stdin"), stdio.get("stdout"), stdio.get("stderr"))
        stream = self.next_stream
        self.next_stream += 1

        def cb(f: P.Frame) -> None:
            if f.type == Msg.ERROR:
                relay.close()
                answer({"error": P.parse_error(f.payload)[1], "kind": "AgentError"})
                return
            self.relays[stream] = relay
            self.waiters[stream] = lambda code: answer({"exit": code})
            relay.attach(self, stream)
            answer({"ok": True, "pid": P.parse_u32(f.payload), "stream": stream}, close=False)
        self.request(Msg.EXEC, stream, process_records(process), cb)

    def _hook(self, kind: str, fatal: bool = True) -> None:
        from runv import hooks

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
            from runv.console import winsize

            rows, cols = winsize(relay.stdin)
            if rows and cols:
                self.send(Msg.WINSIZE, 1, P.winsize_payload(rows, cols))

    def _pause(self, pause: bool) -> dict[str, Any]:
        from runv.qemu.qmp import QMP

        if self.qmp is None:
            self.qmp = QMP(self.vm.qmp)
        try:
            self.qmp.execute("stop" if pause else "cont")
        except (QemuError, OSError) as e:
            return {"error": str(e), "kind": "QemuError"}
        self.state.status = "paused" if pause else "running"
        self._save()
        return {"ok": True}

    # --- the main loop ------------------------------------------------------

    def run(self) -> int:
        self._set(self.vm.pidfd, selectors.EVENT_READ, lambda m: None)
        while True:
            timeout = None
            if self.shutdown_deadline is not None:
                timeout = max(0.0, self.shutdown_deadline - time.monotonic())
            for key, mask in self.sel.select(timeout):
                if key.data:
                    key.data(mask)
            if self.vm.exited():
                break
            if self.shutdown_deadline is not None and time.monotonic() >= self.shutdown_deadline:
                self.vm.kill()
                break
        log.debug("the VM is down")
        for relay in self.relays.values():
            relay.flush()
        if self.exit_code is None:
            log.error(f"container {self.state.id}: the VM stopped: {self.vm.failure()}")
            self.exit_code = QEMU_DIED
            self.state.status = "stopped"
            self.state.exit_code = QEMU_DIED
            self._save()
        return self.exit_code

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
            data = vm.agent.recv(1 << 20)
            if data:
                pending.extend(decoder.feed(data))
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
            errno_, msg = P.parse_error(f.payload)
            raise AgentError(msg, errno_)


def boot(sd: StateDir, state: State, bundle: Any, stdio: Relay, host_netns: int | None,
         fresh_netns: bool) -> Shim:
    from runv import assets, hooks, mounts, resources
    from runv.accel import choose
    from runv.agent.spec import create_records
    from runv.qemu import vm as qemu_vm
    from runv.qemu.cmdline import Machine, Share

    from runv.config import validate

    config = bundle.config
    # With hooks to run, validate first: a hook must not see an invalid config.
    # Otherwise validating (and importing jsonschema) overlaps the VM's boot.
    early_validation = bool(state.hooks)
    if early_validation:
        validate(config)
    try:
        size = resources.guest_size(config)
        plan = mounts.plan(config, bundle.path)
    except (KeyError, TypeError, AttributeError, ValueError):
        validate(config)  # names what is malformed
        raise
    a = assets.require()
    accel = choose(a)
    state.accel = accel.accel
    # The status these hooks see is "created", as crun and the runtime-tools suite have it.
    hook_state = {"ociVersion": config.get("ociVersion", ""), "id": state.id, "status": "created",
                  "pid": state.pid, "bundle": state.bundle, "annotations": state.annotations}
    hooks.run(state.hooks, "createRuntime", hook_state, bundle.path, host_netns)
    hooks.run(state.hooks, "prestart", hook_state, bundle.path, host_netns)
    nics = _join_network(state, fresh_netns)
    taps: list[int] = []
    try:
        taps = _open_taps(nics)
        root_ro = bool((config.get("root") or {}).get("readonly"))
        machine = Machine(a.qemu, a.kernel, a.initrd, accel=accel.accel,
                          memory_mb=size.memory_mb, cpus=size.cpus,
                          devices=[Share(P.SHARE_ROOT_TAG, bundle.rootfs, root_ro), *plan.shares,
                                   *(nic.device(i, fd) for i, (nic, fd) in enumerate(zip(nics, taps)))])
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
            raise QemuError(f"guest agent {name} speaks protocol {version}, runv speaks {P.VERSION}")
        from runv.network import netif_records

        for nic in nics:
            vm.agent.sendall(P.encode(Msg.NETIF, 0, netif_records(nic)))
            expect_ok(vm, decoder, BOOT_TIMEOUT)
        vm.agent.sendall(P.encode(Msg.CREATE, 1, create_records(config, plan.records, plan.guest_dirs)))
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
    for f in getattr(decoder, "pending", []):
        shim._dispatch(f)
    stdio.attach(shim, 1)
    shim.relays[1] = stdio
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
    from runv import network

    return network.setup()


def _open_taps(nics: list[Any]) -> list[int]:
    """An fd on each NIC's tap, for QEMU."""
    if not nics:
        return []
    from runv import network

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
        from runv import network

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
        state.status = "created"
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
    except OSError as e:
        _report(sync_fd, {"error": str(e), "kind": "RunvError"})
    except BaseException as e:  # noqa: BLE001 - a shim must never die with a traceback
        _report(sync_fd, {"error": f"internal error: {type(e).__name__}: {e}", "kind": "RunvError"})
    os._exit(code)


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
    from runv import cgroups

    cg = cgroups.setup(config, state.id, os.getpid())
    state.cgroup = ":".join(cg.dirs)


# Namespaces the shim joins or makes, so that host-side views of the container match.
HOST_NAMESPACES = ("ipc", "uts", "cgroup")
# Namespaces the shim makes anew but never joins by path: it needs the host's
# filesystem and pids. A path is still checked to be of the right type.
NEW_ONLY = ("mount",)


def _host_namespaces(config: dict[str, Any]) -> None:
    """The shim (the container's pid on the host) joins or makes the ipc, uts and
    cgroup namespaces the config names, so that host-side views of the container
    match. The guest makes its own for the processes inside."""
    from runv import syscalls

    for ns in (config.get("linux") or {}).get("namespaces") or []:
        kind = ns.get("type", "")
        if ns.get("path"):
            _check_namespace_type(ns["path"], kind)
        if kind in NEW_ONLY and not ns.get("path"):
            syscalls.unshare(syscalls.NAMESPACE_FLAGS[kind])
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
    from runv import syscalls

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
    from runv import syscalls

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
