"""The host's end of the agent port: requests in order with deadlines, guest
output acknowledged in batches, frames decoded and handed on; and the blocking
handshake a VM's start needs (READY and its version, HELLO, a request's OK).

Nothing the guest sends is trusted: whatever breaks the protocol cuts the link
(`cut`), and the owner stops the VM. No frame from the guest raises out of here.
"""
from __future__ import annotations

import collections
import os
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from runv.agent import protocol as P
from runv.agent.protocol import Msg
from runv.errors import AgentError, QemuError
from runv.guest_text import printable

RECV_SIZE = 65536
ACK_BATCH = 65536  # ACKs are queued for the guest only while outq is shorter
SEED_BYTES = 64    # HELLO's fresh entropy for a restored guest

Reply = Callable[[P.Frame], None]
Handler = Callable[[int], None]
Watch = Callable[[Any, int, Handler | None], None]  # (fileobj, events, handler): 0 = stop watching


class Guest(Protocol):
    """What the handshake needs of a VM (runv.qemu.vm.VM)."""
    agent: socket.socket
    pidfd: int

    def wait(self, timeout: float) -> bool: ...
    def failure(self) -> str: ...


def agent_error(f: P.Frame) -> AgentError:
    """The one way an ERROR frame becomes an exception: the guest's errno and its text, escaped."""
    errno_, msg = P.parse_error(f.payload)
    return AgentError(printable(msg), errno_)


# --- the handshake: blocking, before the event loop runs ----------------------------

def await_frame(vm: Guest, decoder: P.Decoder, pending: list[P.Frame], timeout: float) -> P.Frame:
    """The next frame from the agent (frames read past it stay in `pending`);
    QemuError if QEMU dies, the guest breaks the protocol or time runs out."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(vm.agent, selectors.EVENT_READ)
        sel.register(vm.pidfd, selectors.EVENT_READ)
        while not pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QemuError(f"the guest agent did not answer within {timeout:.0f} s "
                                f"(last console line: {vm.failure()})")
            ready = {k.fileobj for k, _ in sel.select(left)}
            if vm.agent in ready:
                data = vm.agent.recv(RECV_SIZE)
                if data:
                    try:
                        pending.extend(decoder.feed(data))
                    except P.ProtocolError as e:
                        raise QemuError(f"the guest agent broke the protocol: {printable(str(e))}") from None
                    continue
            if ready:
                vm.wait(2.0)
                raise QemuError(f"the VM stopped while starting: {vm.failure()}")
    return pending.pop(0)


@dataclass
class Handshake:
    """The agent's side of a VM being started: READY awaited, then requests
    answered one at a time. What arrives past the last reply is kept in
    `pending` for the event loop's Link."""
    vm: Guest
    decoder: P.Decoder
    pending: list[P.Frame]
    name: str = ""  # the agent's, from READY

    @classmethod
    def start(cls, vm: Guest, timeout: float) -> Handshake:
        """Wait for READY and check its version."""
        hs = cls(vm, P.Decoder(), [])
        hs.ready(timeout)
        return hs

    def ready(self, timeout: float) -> str:
        """The agent's READY, of our protocol version; its name."""
        f = await_frame(self.vm, self.decoder, self.pending, timeout)
        if f.type != Msg.READY:
            raise QemuError(f"the guest agent sent {f.type.name} before READY")
        try:
            version, name = P.parse_ready(f.payload)
        except P.ProtocolError as e:
            raise QemuError(f"the guest agent broke the protocol: {printable(str(e))}") from None
        if version != P.VERSION:
            raise QemuError(f"guest agent {printable(name)} speaks protocol {version}, runv speaks {P.VERSION}")
        self.name = name
        return name

    def call(self, msg: Msg, stream: int, payload: bytes, timeout: float) -> P.Frame:
        """Send one request and wait for its OK; AgentError (with the guest's errno) on ERROR."""
        self.vm.agent.sendall(P.encode(msg, stream, payload))
        while True:
            f = await_frame(self.vm, self.decoder, self.pending, timeout)
            if f.type == Msg.OK:
                return f
            if f.type == Msg.ERROR:
                try:
                    raise agent_error(f)
                except P.ProtocolError as e:
                    raise QemuError(f"the guest agent broke the protocol: {e}") from None


def hello(agent: socket.socket) -> None:
    """HELLO to a restored guest: the host's clock now and fresh entropy; it answers READY."""
    agent.sendall(P.encode(Msg.HELLO, 0, P.hello_payload(time.time_ns(), os.urandom(SEED_BYTES))))


# --- the link: non-blocking, in the event loop ----------------------------------------

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


def _ignore(reason: str) -> None:
    pass


class Link:
    """The agent port in the event loop. Frames other than replies go to
    `on_frame`; a guest that breaks the protocol is reported once to `on_cut`."""

    def __init__(self, sock: socket.socket, watch: Watch, on_frame: Callable[[P.Frame], None],
                 on_cut: Callable[[str], None], timeout: float, decoder: P.Decoder | None = None) -> None:
        self.sock = sock
        self.watch = watch
        self.on_frame = on_frame
        self.on_cut = on_cut
        self.timeout = timeout
        self.decoder = decoder or P.Decoder()
        self.outq = bytearray()
        self.acks: dict[tuple[int, int], int] = {}  # (stream, which) -> bytes to ACK
        self.requests: collections.deque[Request] = collections.deque()
        self.inflight: Request | None = None
        self.broken: str | None = None  # why the guest was cut off
        sock.setblocking(False)

    # --- out ---

    def send(self, msg: Msg, stream: int = 0, payload: bytes = b"") -> None:
        self.outq += P.encode(msg, stream, payload)
        self._watch()

    def ack(self, stream: int, which: int, nbytes: int) -> None:
        """Acknowledge guest output; ACKs of one stream are merged until the port
        takes them, so a guest that stops reading cannot grow outq with them."""
        self.acks[stream, which] = self.acks.get((stream, which), 0) + nbytes
        self._watch()

    def request(self, msg: Msg, stream: int, payload: bytes, on_reply: Reply,
                fail: Callable[[str], None] = _ignore,
                on_expire: Callable[[], None] | None = None) -> Request:
        req = Request(P.encode(msg, stream, payload), on_reply, fail,
                      time.monotonic() + self.timeout, on_expire)
        self.requests.append(req)
        self._next_request()
        return req

    def _next_request(self) -> None:
        if self.inflight is None and self.requests and not self.broken:
            self.inflight = self.requests.popleft()
            self.outq += self.inflight.frame
            self._watch()

    def expire(self, now: float) -> list[Request]:
        """Answer every request past its deadline: the agent is stuck (or the VM
        paused). The expired one in flight still owns the next reply."""
        why = f"the guest agent did not answer within {self.timeout:.0f} s"
        late = [r for r in self.requests if now >= r.deadline]
        if self.inflight and not self.inflight.expired and now >= self.inflight.deadline:
            self.inflight.expired = True
            late.insert(0, self.inflight)
        for req in late:
            if req in self.requests:
                self.requests.remove(req)
            if req.on_expire:
                req.on_expire()  # may answer the client itself
            req.fail(why)
        return late

    def next_deadline(self) -> float | None:
        deadlines = [r.deadline for r in self.requests]
        if self.inflight and not self.inflight.expired:
            deadlines.append(self.inflight.deadline)
        return min(deadlines, default=None)

    def fail_all(self, why: str) -> None:
        pending = [self.inflight] if self.inflight and not self.inflight.expired else []
        pending += self.requests
        self.inflight = None
        self.requests.clear()
        for req in pending:
            req.fail(why)

    def _watch(self) -> None:
        if self.broken:
            return
        want_write = self.outq or self.acks
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
        self.watch(self.sock, events, self._on_ready)

    def _on_ready(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self.flush()
        if mask & selectors.EVENT_READ:
            try:
                data = self.sock.recv(RECV_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.watch(self.sock, 0, None)
                return
            self.receive(data)

    def flush(self) -> None:
        if self.acks and len(self.outq) < ACK_BATCH:
            for (stream, which), n in self.acks.items():
                self.outq += P.encode(Msg.ACK, stream, P.ack_payload(which, n))
            self.acks.clear()
        if self.outq:
            try:
                n = self.sock.send(self.outq)
                del self.outq[:n]
            except BlockingIOError:
                pass
            except OSError:
                self.outq.clear()
        self._watch()

    # --- in ---

    def receive(self, data: bytes) -> None:
        """Bytes from the guest. It is not trusted: whatever breaks the protocol
        cuts it off; nothing it sends raises here."""
        if self.broken:
            return
        try:
            self._dispatch_all(self.decoder.feed(data))
        except P.ProtocolError as e:
            self.cut(str(e))
        except Exception as e:  # noqa: BLE001 - a bug must not leave a hostile guest running
            self.cut(f"internal error: {type(e).__name__}: {e}")

    def take(self, frames: list[P.Frame]) -> None:
        """Frames the handshake read past the last reply it waited for."""
        try:
            self._dispatch_all(frames)
        except P.ProtocolError as e:
            self.cut(str(e))
        except Exception as e:  # noqa: BLE001 - as in receive()
            self.cut(f"internal error: {type(e).__name__}: {e}")

    def _dispatch_all(self, frames: list[P.Frame]) -> None:
        for frame in frames:
            if self.broken:
                return
            if frame.type in (Msg.OK, Msg.ERROR):
                self._reply(frame)
            else:
                self.on_frame(frame)

    def cut(self, reason: str) -> None:
        """The guest is not talked to again: pending requests fail, the owner is told."""
        if self.broken:
            return
        self.broken = printable(reason)
        self.watch(self.sock, 0, None)
        self.outq.clear()
        self.acks.clear()
        self.fail_all("the guest agent broke the protocol")
        self.on_cut(self.broken)

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
