"""A pod's next containers, created in the VM of its first one (one VM per pod).

The first container of a pod (a CRI pause container, Podman's infra
container) boots the VM with the pod share (runv.qemu.podshare). Each next
container has a state dir and a light shim of its own (runv.member), whose pid
is the container's: the light shim asks this sandbox's control socket to
`create` it, handing over its stdio and its files (its rootfs, then each bind
source, as detached mount trees). Here they are attached in the pod share,
the agent creates it on a stream of its own, in namespaces of its own and
those it names by path, which are the pod's; then the light shim waits on the
same connection for its exit status. A light shim that goes away takes its
container with it.
"""
from __future__ import annotations

import os
import selectors
import signal
import socket

from runv import errors, log
from runv.agent import protocol as P
from runv.agent.link import agent_error
from runv.agent.protocol import Msg
from runv.errors import RunvError
from runv.qemu import podshare
from runv.sandbox.relay import Relay
from runv.sandbox.sandbox import Answer, Fail, Guest, Sandbox
from runv.state import State, StateDir
from runv.status import Status


def create(sb: Sandbox, container_id: str, conn: socket.socket, stdio_names: list[str], fds: list[int],
           answer: Answer, fail: Fail) -> None:
    """Create container `container_id` of this pod; its light shim is on `conn`."""
    if not isinstance(stdio_names, list) or len(stdio_names) > 3:
        raise ValueError("bad stdio")
    trees = fds[len(stdio_names):]
    try:
        sd, state = _member_state(sb, container_id, conn)
        relay = Relay.for_fds(stdio_names, fds[:len(stdio_names)], "pty" in stdio_names)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    m = Guest(sd, state, sb.new_stream())
    try:
        payload = _prepare(sb, m, trees)
    except BaseException:
        relay.close()
        forget(sb, m)
        raise
    finally:
        for fd in trees:
            os.close(fd)

    def cb(f: P.Frame) -> None:
        if f.type == Msg.ERROR:
            relay.close()
            forget(sb, m)
            answer(errors.to_wire(agent_error(f)))
            return
        sb.attach(m.stream, relay)
        try:
            sb.hook(m, "createContainer")
        except RunvError as e:
            sb.link.request(Msg.SIGNAL, m.stream, P.signal_payload(signal.SIGKILL, True), lambda f: None)
            answer(errors.to_wire(e))
            return
        sb.move(m, Status.CREATED)
        _watch_light_shim(sb, m, conn, answer)
        answer({"ok": True, "stream": m.stream}, close=False)

    def failed(why: str) -> None:
        relay.close()
        forget(sb, m)
        fail(why)
    sb.link.request(Msg.CREATE, m.stream, payload, cb, failed)


def _member_state(sb: Sandbox, container_id: str, conn: socket.socket) -> tuple[StateDir, State]:
    """The container's state, which must name this sandbox and the light shim asking."""
    if sb.exit_code is not None or Status(sb.state.status) not in (Status.CREATED, Status.RUNNING):
        raise errors.InvalidState(f"the pod's container {sb.state.id} is not running")
    if not sb.state.pod:
        raise errors.InvalidState(f"container {sb.state.id} holds no pod")
    sd = StateDir(sb.sd.root, container_id)
    state = sd.read()
    peer = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    if state.sandbox != sb.state.id or state.pid != int.from_bytes(peer[:4], "little"):
        raise errors.InvalidArgument(f"container {container_id} is not one of this pod's")
    if sb.member(container_id) is not None:
        raise errors.Exists(f"container with id exists: {container_id}")
    return sd, state


def _prepare(sb: Sandbox, m: Guest, trees: list[int]) -> bytes:
    """Everything before CREATE: the config checked, the hooks before the
    container exists, its files (`trees`) on the pod share; CREATE's payload."""
    from runv.agent.records import create_payload, member_records
    from runv.host import hooks
    from runv.oci import config as oci_config
    from runv.oci import mounts

    bundle = oci_config.load(m.state.bundle, schema=False)
    oci_config.validating(bundle.config)()  # not in this long-lived shim
    config = bundle.config
    plan = oci_config.explained(config, mounts.plan, config, bundle.path, podshare.guest_dir(m.stream))
    linux = config.get("linux") or {}
    root_dir = f"{podshare.guest_dir(m.stream)}/rootfs"
    m.state.resources = dict(linux.get("resources") or {})
    sb.members[m.stream] = m  # counted in the pod's cap
    payload = oci_config.explained(config, create_payload, config, plan.mounts, [],
                                   member_records(linux, root_dir) + sb.grow_pod())
    hook_state = {"ociVersion": config.get("ociVersion", ""), "id": m.state.id, "status": "created",
                  "pid": m.state.pid, "bundle": m.state.bundle, "annotations": m.state.annotations}
    hooks.run(m.state.hooks, "createRuntime", hook_state, bundle.path)
    hooks.run(m.state.hooks, "prestart", hook_state, bundle.path)
    if len(trees) != 1 + len(plan.binds):
        raise errors.InvalidArgument(f"container {m.state.id}: {len(trees)} file trees for "
                                     f"{1 + len(plan.binds)} (its rootfs and bind sources)")
    root_ro = bool((config.get("root") or {}).get("readonly"))
    entries = [podshare.Entry(trees[0], "rootfs", root_ro)]
    entries += [podshare.Entry(t, f"{b.tag}/{b.name}", b.readonly) for t, b in zip(trees[1:], plan.binds, strict=True)]
    podshare.add(sb.vm.pid, m.stream, entries)
    return payload


def _watch_light_shim(sb: Sandbox, m: Guest, conn: socket.socket, answer: Answer) -> None:
    """The container's status goes to its light shim; a light shim that hangs up
    (killed) takes the container with it."""
    def hung_up(mask: int) -> None:
        try:
            data = conn.recv(64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # the light shim says nothing after create: ignored
        sb.loop.watch(conn, 0, None)
        m.ended = None
        m.written = False  # `delete` (which killed it, most likely) removes the state dir
        if Status(m.state.status) is not Status.STOPPED:
            log.debug(f"container {m.state.id}: its light shim is gone: killing it")
            sb.link.request(Msg.SIGNAL, m.stream, P.signal_payload(signal.SIGKILL, True), lambda f: None)

    def ended(code: int) -> None:
        sb.loop.watch(conn, 0, None)
        answer({"exit": code})
    m.ended = ended
    sb.loop.watch(conn, selectors.EVENT_READ, hung_up)


def forget(sb: Sandbox, m: Guest) -> None:
    """The container is over (or never was): its files leave the pod share."""
    if sb.members.pop(m.stream, None) is None:
        return
    if sb.vm.exited():
        return  # its mount namespace went with it
    try:
        podshare.remove(sb.vm.pid, m.stream)
    except RunvError as e:
        log.error(f"container {m.state.id}: {e}")
    sb.size_pod()

