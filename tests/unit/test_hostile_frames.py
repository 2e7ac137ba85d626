"""A hostile guest: whatever arrives on the agent port, the host's decoder and
the shim's frame handling stay bounded and never raise; a guest that breaks the
protocol gets its VM stopped. The shim runs here around a fake VM (a socketpair
for the port), since this is its pure logic; the real binary is exercised in
tests/integration/test_hostile_guest.py."""
from __future__ import annotations

import os
import signal
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runv.agent import protocol as P
from runv.agent.link import ACK_BATCH
from runv.agent.protocol import Msg
from runv.guest_text import LIMIT, printable
from runv.sandbox.client import REQUEST_TIMEOUT
from runv.sandbox.relay import Relay
from runv.sandbox.sandbox import Sandbox
from runv.state import State

pytestmark = pytest.mark.property
FRAME_MAX = P.HEADER_SIZE + P.MAX_PAYLOAD


# --- a shim around a fake VM ---------------------------------------------------

class FakeVM:
    def __init__(self) -> None:
        self.agent, self.guest = socket.socketpair()
        self.guest.setblocking(False)
        self.killed = False

    def kill(self) -> None:
        self.killed = True

    def exited(self) -> bool:
        return self.killed

    def failure(self) -> str:
        return "fake"


class FakeStateDir:
    path = "/nonexistent"
    id = "hostile"

    def __init__(self) -> None:
        self.saved: list[tuple[str, int | None]] = []

    def write(self, state: State) -> None:
        self.saved.append((state.status, state.exit_code))


class Harness:
    """A running container (init on stream 1, one exec on stream 2 fed stdin)
    whose output readers never read, with a request in flight."""

    def __init__(self) -> None:
        self.vm = FakeVM()
        self.sd = FakeStateDir()
        self.sandbox = Sandbox(self.sd, State(id="hostile", bundle="/b", status="running"), self.vm)
        self.fds: list[int] = []
        self.answers: list[object] = []
        for stream in (1, 2):
            stdin = self._pipe_with_data() if stream == 2 else None
            relay = Relay(stdin, self._pipe(), self._pipe())
            self.sandbox.attach(stream, relay)
        self.sandbox.next_stream = 3
        self.request()

    def _pipe(self) -> int:
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.fds += [r, w]
        return w

    def _pipe_with_data(self) -> int:
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        os.write(w, b"i" * 60000)
        self.fds += [r, w]
        return r

    def request(self) -> None:
        """A PS, whose reply is parsed as the shim's is."""
        def replied(f: P.Frame) -> None:
            if f.type == Msg.OK:
                self.answers.append(P.parse_u32_list(f.payload))
            else:
                self.answers.append(P.parse_error(f.payload))
        self.sandbox.link.request(Msg.PS, 1, b"", replied, self.answers.append)

    def guest_reads(self) -> bytes:
        try:
            return self.vm.guest.recv(1 << 20)
        except BlockingIOError:
            return b""

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sandbox.loop.close()
        self.vm.agent.close()
        self.vm.guest.close()
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass  # an exec's relay closed its own at exit

    def check_bounded(self) -> None:
        shim = self.sandbox
        assert shim.link.decoder.buffered <= FRAME_MAX
        for relay in shim.relays.values():
            assert all(len(b) <= P.WINDOW for b in relay.buf.values())
            assert relay.unacked <= P.WINDOW
        assert all(0 <= n <= P.WINDOW for n in shim.link.acks.values())
        assert len(shim.link.acks) <= 2 * len(shim.relays) + 2
        # One request, a window of stdin per stream, a batch of ACKs.
        assert len(shim.link.outq) <= FRAME_MAX + len(shim.relays) * (P.WINDOW + 2 * FRAME_MAX) + ACK_BATCH
        if shim.link.broken:
            assert self.vm.killed
            assert "internal error" not in shim.link.broken


@pytest.fixture
def harness():
    h = Harness()
    yield h
    h.close()


def raw(type_: int, stream: int, payload: bytes, length: int | None = None) -> bytes:
    return struct.pack("<III", type_, stream, len(payload) if length is None else length) + payload


# --- strategies -----------------------------------------------------------------

streams = st.one_of(st.sampled_from([0, 1, 2, 3, 0xFFFFFFFF]), st.integers(0, 0xFFFFFFFF))
types = st.one_of(st.sampled_from(list(Msg)), st.integers(0, 0xFFFFFFFF))
payloads = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([struct.pack("<II", 0, 5), struct.pack("<II", 1, 5), struct.pack("<II", 0, 1 << 31),
                     struct.pack("<i", 0), struct.pack("<i", 9), struct.pack("<i", 1) + b"\x1b[2J"]),
    st.integers(0, P.MAX_PAYLOAD).map(lambda n: b"y" * n),
)


@st.composite
def frames(draw) -> bytes:
    type_, stream, payload = draw(types), draw(streams), draw(payloads)
    if draw(st.integers(0, 9)) == 0:  # a header that lies about its length
        return raw(type_, stream, payload, draw(st.integers(0, 0xFFFFFFFF)))
    return raw(type_, stream, payload)


@st.composite
def chunked(draw, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


actions = st.one_of(
    frames().map(lambda f: ("frames", f)),
    st.binary(max_size=40).map(lambda b: ("bytes", b)),
    st.just(("host writes", b"")),
    st.just(("guest reads", b"")),
    st.just(("request", b"")),
    st.just(("time passes", b"")),
)


# --- the decoder ------------------------------------------------------------------

@given(st.lists(st.binary(max_size=300), max_size=20))
def test_decoder_random_bytes_raise_only_protocol_error(chunks):
    d = P.Decoder()
    for chunk in chunks:
        try:
            d.feed(chunk)
        except P.ProtocolError:
            with pytest.raises(P.ProtocolError):
                d.feed(b"more")  # a broken stream stays broken
            return
        assert d.buffered <= FRAME_MAX


@given(st.lists(st.tuples(st.sampled_from(list(Msg)), st.integers(0, 0xFFFFFFFF),
                          st.binary(max_size=200)), max_size=10), st.data())
def test_decoder_reassembles_any_split(items, data):
    stream = b"".join(P.encode(t, s, p) for t, s, p in items)
    d = P.Decoder()
    out = []
    for chunk in data.draw(chunked(stream)):
        out += d.feed(chunk)
        assert d.buffered <= FRAME_MAX
    assert out == [P.Frame(t, s, p) for t, s, p in items]


@given(st.lists(st.tuples(st.sampled_from(list(Msg)), st.integers(0, 3), st.binary(max_size=100)),
                min_size=1, max_size=8),
       st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6), st.data())
def test_decoder_mutated_frames(items, flips, data):
    stream = bytearray(b"".join(P.encode(t, s, p) for t, s, p in items))
    for pos, value in flips:
        stream[pos % len(stream)] = value
    d = P.Decoder()
    try:
        for chunk in data.draw(chunked(bytes(stream))):
            for f in d.feed(chunk):
                assert isinstance(f.type, Msg) and len(f.payload) <= P.MAX_PAYLOAD
            assert d.buffered <= FRAME_MAX
    except P.ProtocolError:
        pass


def test_decoder_buffers_one_frame_of_a_big_feed():
    d = P.Decoder()
    blob = P.encode(Msg.STDOUT, 1, b"z" * P.MAX_PAYLOAD) * 40 + P.encode(Msg.STDOUT, 1, b"z" * 100)[:50]
    frames = d.feed(blob)
    assert len(frames) == 40 and d.buffered < FRAME_MAX


def test_decoder_rejects_a_bad_header_before_its_payload():
    with pytest.raises(P.ProtocolError, match="exceeds"):
        P.Decoder().feed(raw(Msg.STDOUT, 1, b"", P.MAX_PAYLOAD + 1))
    with pytest.raises(P.ProtocolError, match="unknown message type 4242"):
        P.Decoder().feed(raw(4242, 1, b"abc"))


@pytest.mark.parametrize("parse, payload", [
    (P.parse_ack, b"1234567"), (P.parse_ack, b"123456789"), (P.parse_exit, b""),
    (P.parse_exit, b"12345"), (P.parse_error, b"123"), (P.parse_ready, b""),
    (P.parse_u32, b"12"), (P.parse_u32_list, b"12345"),
])
def test_short_or_long_payloads_are_protocol_errors(parse, payload):
    with pytest.raises(P.ProtocolError):
        parse(payload)


# --- the shim's frame handling ----------------------------------------------------

@given(st.lists(actions, max_size=40), st.data())
def test_shim_survives_any_frames(steps, data):
    with Harness() as h:
        run_steps(h, steps, data)


def run_steps(h: Harness, steps, data) -> None:
    for kind, blob in steps:
        if kind == "frames" or kind == "bytes":
            for chunk in data.draw(chunked(blob)):
                h.sandbox.link.receive(chunk)  # never raises
        elif kind == "host writes":
            h.sandbox.link.flush()
        elif kind == "guest reads":
            h.guest_reads()
        elif kind == "request" and not h.sandbox.link.broken:
            h.request()
        elif kind == "time passes":
            h.sandbox.expire(float("inf"))
        h.check_bounded()


@given(st.lists(st.integers(1, P.MAX_PAYLOAD), max_size=30))
def test_output_past_the_window_is_cut_off(sizes):
    """A guest that ignores ACKs: the shim holds at most a window per stream."""
    with Harness() as h:
        sent = 0
        for n in sizes:
            h.sandbox.link.receive(P.encode(Msg.STDOUT, 1, b"o" * n))
            sent += n
            assert h.sandbox.link.broken is None if sent <= P.WINDOW else "past its window" in h.sandbox.link.broken
            h.check_bounded()


def test_honest_guest_within_its_window_is_served(harness):
    """Output that respects the window, acknowledged as the host writes it."""
    h = harness
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    h.fds += [r, w]
    h.sandbox.relays[1].out[1] = w
    total = 0
    for _ in range(8):
        h.sandbox.link.receive(P.encode(Msg.STDOUT, 1, b"o" * P.MAX_PAYLOAD) * (P.WINDOW // P.MAX_PAYLOAD))
        total += P.WINDOW
        while h.sandbox.relays[1].buf[1]:
            h.sandbox.relays[1]._write(1)
            total -= len(os.read(r, 1 << 20))
        h.sandbox.link.flush()
        acks = P.Decoder().feed(h.guest_reads())
        assert sum(P.parse_ack(f.payload)[1] for f in acks if f.type == Msg.ACK) == P.WINDOW
    assert h.sandbox.link.broken is None and total == 0


def test_acks_merge_while_the_guest_does_not_read(harness):
    """A guest that floods tiny frames to an output the host drops and never
    reads its port: the ACK queue does not grow frame by frame."""
    h = harness
    h.sandbox.relays[1].out[1] = None
    for _ in range(3):
        h.sandbox.link.receive(P.encode(Msg.STDOUT, 1, b"x") * 1000)
        h.sandbox.link.flush()
    outq = len(h.sandbox.link.outq)
    h.sandbox.link.receive(P.encode(Msg.STDOUT, 1, b"x") * 1000)
    h.sandbox.link.flush()
    assert len(h.sandbox.link.outq) <= outq + P.HEADER_SIZE + 8
    h.check_bounded()


@pytest.mark.parametrize("frame, reason", [
    (raw(999, 1, b""), "unknown message type"),
    (raw(Msg.STDOUT, 1, b"", P.MAX_PAYLOAD + 1), "exceeds"),
    (raw(Msg.EXIT, 1, b"\x00"), "EXIT payload"),
    (raw(Msg.ACK, 2, b"\x00" * 7), "ACK payload"),
    (raw(Msg.ACK, 2, struct.pack("<II", 0, 1 << 20)), "unacknowledged"),
    (raw(Msg.ACK, 2, struct.pack("<II", 1, 5)), "ACK of output"),
    (raw(Msg.ACK, 9, struct.pack("<II", 0, 0)), "unknown stream 9"),
    (raw(Msg.STDOUT, 7, b"hi"), "unknown stream 7"),
    (raw(Msg.EXIT, 0, struct.pack("<i", 0)), "unknown stream 0"),
    (raw(Msg.READY, 0, struct.pack("<I", 1) + b"again"), "unexpected READY"),
    (raw(Msg.HELLO, 0, b""), "unexpected HELLO"),
    (raw(Msg.CREATE, 1, b""), "unexpected CREATE"),
    (raw(Msg.OK, 1, b"12345"), "malformed"),  # PS's reply: a list of u32
    (raw(Msg.ERROR, 1, b"\x01"), "malformed"),
    (raw(Msg.OK, 1, b"") * 2, "no request in flight"),
    (raw(Msg.EXIT, 1, struct.pack("<i", 0)) * 2, "exited stream 1"),
    (raw(Msg.EXIT, 1, struct.pack("<i", 0)) + raw(Msg.STDOUT, 1, b"late"), "exited stream 1"),
])
def test_protocol_errors_stop_the_vm(harness, frame, reason):
    h = harness
    h.sandbox.link.receive(frame)
    assert h.vm.killed, reason
    log = h.sandbox.link.broken or ""
    assert reason in log or reason == "malformed", log
    if reason == "malformed":
        assert h.answers == ["the guest agent broke the protocol"] or \
            h.answers == ["the guest agent sent a malformed reply"]
    h.sandbox.link.receive(raw(Msg.OK, 1, b""))  # ignored from now on
    h.check_bounded()


def test_a_protocol_error_ends_the_container_as_a_dead_qemu(harness):
    h = harness
    h.sandbox.loop.watch(h.vm.agent, 0, None)
    h.sandbox.link.receive(raw(999, 1, b""))
    h.sandbox.vm.pidfd = os.eventfd(1)  # "readable": the loop sees the VM gone
    try:
        assert h.sandbox.run() == 255
    finally:
        os.close(h.sandbox.vm.pidfd)
    assert h.sd.saved[-1] == ("stopped", 255)
    assert h.answers == ["the guest agent broke the protocol"]


def test_ack_after_an_exec_exited_is_ignored(harness):
    """The agent acknowledges stdin it dropped after the process ended."""
    h = harness
    h.sandbox.link.receive(raw(Msg.STDOUT, 2, b"") + raw(Msg.EXIT, 2, struct.pack("<i", 0)))
    h.sandbox.link.receive(raw(Msg.ACK, 2, struct.pack("<II", 0, 4096)))
    assert h.sandbox.link.broken is None and 2 not in h.sandbox.relays


def test_an_error_message_is_escaped(harness):
    h = harness
    h.sandbox.link.receive(raw(Msg.OK, 1, b""))  # the harness's PS, answered with no pids
    answers = []

    def answer(reply, close=True):
        answers.append(reply)
    h.sandbox.kill(15, False, 1, answer, lambda why: answers.append(why))
    h.sandbox.link.receive(raw(Msg.ERROR, 1, struct.pack("<i", 3) + b"\x1b]0;owned\x07\x1b[2J" + b"A" * 5000))
    (why,) = answers
    assert "\x1b" not in why and "\x07" not in why and len(why) <= LIMIT + 3


# --- deadlines ----------------------------------------------------------------------

def test_a_request_the_agent_never_answers_expires(harness):
    h = harness
    h.request()
    now = max(r.deadline for r in h.sandbox.link.requests)
    h.sandbox.expire(now)
    assert h.answers == [f"the guest agent did not answer within {REQUEST_TIMEOUT:.0f} s"] * 2
    assert h.sandbox.next_deadline() is None
    # The late reply belongs to the expired request, not to the next one.
    h.answers.clear()
    h.request()
    h.sandbox.link.receive(raw(Msg.OK, 1, struct.pack("<I", 7)))  # the first PS's, then the second's
    h.sandbox.link.receive(raw(Msg.OK, 1, struct.pack("<I", 8)))
    assert h.answers[-1] == [8] and h.sandbox.link.broken is None


def test_sigkill_the_agent_does_not_deliver_stops_the_vm(harness):
    h = harness
    answers = []
    h.sandbox.kill(signal.SIGKILL, False, 1, lambda r, close=True: answers.append(r), answers.append)
    h.sandbox.expire(float("inf"))
    assert h.vm.killed and h.sd.saved[-1] == ("stopped", 137)
    assert answers[0] == {"ok": True}


def test_late_exec_reply_kills_the_process(harness):
    h = harness
    h.sandbox.link.receive(raw(Msg.OK, 1, b""))  # the harness's PS
    answers = []
    h.sandbox.exec(h.sandbox.own, {"args": ["sh"], "cwd": "/"}, [], [],
                   lambda r, close=True: answers.append(r), answers.append)
    h.sandbox.expire(float("inf"))
    assert answers == [f"the guest agent did not answer within {REQUEST_TIMEOUT:.0f} s"]
    h.sandbox.link.receive(raw(Msg.OK, 3, struct.pack("<I", 42)))
    h.sandbox.link.receive(raw(Msg.STDOUT, 3, b"unseen"))  # its stream is known, output dropped
    assert h.sandbox.link.broken is None
    assert h.sandbox.link.inflight.frame == P.encode(Msg.SIGNAL, 3, P.signal_payload(signal.SIGKILL))


# --- a paused VM --------------------------------------------------------------------

class FakeQMP:
    def __init__(self) -> None:
        self.commands: list[str] = []

    def execute(self, command: str) -> dict:
        self.commands.append(command)
        return {}


def test_paused_kill_and_requests(harness):
    h = harness
    h.sandbox.link.receive(raw(Msg.OK, 1, b""))
    h.sandbox.qmp = FakeQMP()
    assert h.sandbox.pause(True) == {"ok": True}
    answers = []

    def answer(reply, close=True):
        answers.append(reply)
    h.sandbox.kill(signal.SIGTERM, False, 1, answer, answers.append)
    assert answers == [{"ok": True}] and h.sandbox.link.inflight is None  # held until resume
    h.sandbox.pause(False)
    assert h.sandbox.link.inflight.frame == P.encode(Msg.SIGNAL, 1, P.signal_payload(signal.SIGTERM))
    h.sandbox.link.receive(raw(Msg.OK, 1, b""))
    h.sandbox.pause(True)
    answers.clear()
    h.sandbox.kill(signal.SIGKILL, False, 1, answer, answers.append)
    assert answers == [{"ok": True}] and h.vm.killed and h.sd.saved[-1] == ("stopped", 137)


# --- text from the guest ------------------------------------------------------------

@given(st.one_of(st.text(), st.binary()))
def test_printable_has_no_control_characters(text):
    out = printable(text)
    assert out.isprintable() and len(out) <= LIMIT + 3


def test_vm_failure_reads_only_the_tail(tmp_path):
    from runv.qemu.vm import TAIL, VM

    console = tmp_path / "console.log"
    with open(console, "wb") as f:
        f.truncate(1 << 33)  # 8 GiB of NULs without a newline (sparse)
        f.seek(0, os.SEEK_END)
        f.write(b"\nKernel panic \x1b[31mred\x1b[0m\r\n\n")
    (tmp_path / "qemu.log").write_bytes(b"")

    class Proc:
        returncode = -9
    vm = VM(Proc(), None, None, -1, str(tmp_path / "qemu.log"), str(console))
    assert vm.failure() == "Kernel panic \\x1b[31mred\\x1b[0m"
    assert TAIL <= 1 << 16


def test_an_exec_exits_with_output_its_reader_does_not_take(harness):
    """The exec's reader is stuck: the shim does not block writing to it; the
    exit status goes out once the output is written."""
    h = harness
    r, w = os.pipe2(os.O_CLOEXEC)  # blocking, as a client's stdout may be
    h.fds += [r]
    relay = h.sandbox.relays[2]
    relay.out[1] = w
    relay.owned.add(w)
    exits = []
    h.sandbox.waiters[2] = exits.append
    h.sandbox.link.receive(raw(Msg.STDOUT, 2, b"o" * 60000) + raw(Msg.STDOUT, 2, b"o" * 60000)
                   + raw(Msg.STDOUT, 2, b"") + raw(Msg.EXIT, 2, struct.pack("<i", 3 << 8)))
    assert exits == [] and 2 in h.sandbox.relays and h.sandbox.link.broken is None
    got = 0
    while 2 in h.sandbox.relays:  # the selector would call _write as the pipe drains
        relay._write(1)
        got += len(os.read(r, 1 << 20))
    assert exits == [3]
    while chunk := os.read(r, 1 << 20):
        got += len(chunk)
    assert got == 120000
