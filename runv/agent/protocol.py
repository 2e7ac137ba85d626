"""The host <-> guest wire format: pure encoding and decoding, no I/O.

Mirrors kernel/agent/proto.h (checked by tests/unit/test_protocol.py);
docs/protocol.md describes the semantics.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

VERSION = 1
HEADER = struct.Struct("<III")
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 65536
WINDOW = 262144
PORT_NAME = "runv.agent"
SHARE_ROOT_TAG = "rootfs"


class Msg(enum.IntEnum):
    CREATE = 1
    START = 2
    EXEC = 3
    SIGNAL = 4
    STDIN = 5
    WINSIZE = 6
    PS = 7
    SHUTDOWN = 8
    NETIF = 9
    HELLO = 10
    UPDATE = 11
    READY = 100
    OK = 101
    ERROR = 102
    STDOUT = 103
    STDERR = 104
    EXIT = 105
    ACK = 110


class Tag(enum.IntEnum):
    ARG = 1
    ENV = 2
    CWD = 3
    UID = 4
    GID = 5
    ADDGID = 6
    HOSTNAME = 7
    ROOT_READONLY = 8
    MOUNT = 9
    TERMINAL = 10
    UMASK = 11
    RLIMIT = 12
    CAPS = 13
    NO_NEW_PRIVS = 14
    OOM_SCORE_ADJ = 15
    SECCOMP = 16
    MASKED_PATH = 17
    READONLY_PATH = 18
    SYSCTL = 19
    DEVICE = 20
    DOMAINNAME = 21
    ROOT_PROPAGATION = 22
    UID_MAP = 23
    GID_MAP = 24
    SHARE = 25
    NAMESPACES = 26
    SECCOMP_FLAGS = 27
    CGROUP = 28
    ROOT_DIR = 29
    JOIN_NAMESPACES = 30
    CONTAINER = 31
    POD_CGROUP = 32
    NET_ADDR = 40
    NET_ROUTE = 41
    NET_MAC = 42
    NET_MTU = 43
    NET_NAME = 44
    NET_PROBE_MAC = 45


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


@dataclass(frozen=True)
class Frame:
    type: Msg
    stream: int
    payload: bytes = b""


def encode(type: Msg, stream: int = 0, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(type, stream, len(payload)) + payload


class Decoder:
    """Accumulates bytes from the transport and yields whole frames.

    The peer is not trusted: a bad header raises ProtocolError as soon as it is
    complete (the stream cannot be resynchronised, so the decoder stays broken),
    and the buffer never holds more than one frame, however much is fed at once.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need: tuple[Msg, int, int] | None = None  # the header of the frame being read
        self._error: str | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        if self._error:
            raise ProtocolError(self._error)
        frames = []
        view = memoryview(data)
        while view:
            if self._need is None:
                take = HEADER_SIZE - len(self._buf)
                self._buf += view[:take]
                view = view[take:]
                if len(self._buf) < HEADER_SIZE:
                    break
                self._need = self._header(bytes(self._buf))
                self._buf.clear()
            msg, stream, length = self._need
            take = length - len(self._buf)
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) == length:
                frames.append(Frame(msg, stream, bytes(self._buf)))
                self._buf.clear()
                self._need = None
        return frames

    def _header(self, raw: bytes) -> tuple[Msg, int, int]:
        type_, stream, length = HEADER.unpack(raw)
        if length > MAX_PAYLOAD:
            self._error = f"frame of {length} bytes exceeds {MAX_PAYLOAD}"
        elif type_ not in _MSG_VALUES:
            self._error = f"unknown message type {type_}"
        if self._error:
            raise ProtocolError(self._error)
        return Msg(type_), stream, length


_MSG_VALUES = frozenset(m.value for m in Msg)


# --- records ---------------------------------------------------------------

def record(tag: Tag, value: bytes) -> bytes:
    return struct.pack("<II", tag, len(value)) + value


def rec_str(tag: Tag, value: str) -> bytes:
    return record(tag, value.encode())


def rec_u32(tag: Tag, value: int) -> bytes:
    return record(tag, struct.pack("<I", value & 0xFFFFFFFF))


def rec_i32(tag: Tag, value: int) -> bytes:
    return record(tag, struct.pack("<i", value))


def rec_cstrs(tag: Tag, prefix: bytes, *strings: str) -> bytes:
    """A record of a binary prefix followed by NUL-terminated strings."""
    return record(tag, prefix + b"".join(s.encode() + b"\0" for s in strings))


def decode_records(payload: bytes) -> list[tuple[int, bytes]]:
    out = []
    off = 0
    while off < len(payload):
        if off + 8 > len(payload):
            raise ProtocolError("truncated record header")
        tag, length = struct.unpack_from("<II", payload, off)
        off += 8
        if off + length > len(payload):
            raise ProtocolError("truncated record")
        out.append((tag, payload[off:off + length]))
        off += length
    return out


# --- payloads of the fixed-shape messages ------------------------------------

def signal_payload(signo: int, all_processes: bool = False) -> bytes:
    return struct.pack("<II", signo, int(all_processes))


def ack_payload(which: int, nbytes: int) -> bytes:
    return struct.pack("<II", which, nbytes)


def winsize_payload(rows: int, cols: int) -> bytes:
    return struct.pack("<HH", rows, cols)


def hello_payload(realtime_ns: int, seed: bytes) -> bytes:
    """HELLO: the host's wall clock and fresh entropy for a guest restored from a template."""
    return struct.pack("<Q", realtime_ns) + seed


def _exact(payload: bytes, size: int, what: str) -> None:
    if len(payload) != size:
        raise ProtocolError(f"{what} payload of {len(payload)} bytes, not {size}")


def _at_least(payload: bytes, size: int, what: str) -> None:
    if len(payload) < size:
        raise ProtocolError(f"{what} payload of {len(payload)} bytes, shorter than {size}")


def parse_ack(payload: bytes) -> tuple[int, int]:
    _exact(payload, 8, "ACK")
    return struct.unpack("<II", payload)


def parse_ready(payload: bytes) -> tuple[int, str]:
    _at_least(payload, 4, "READY")
    (version,) = struct.unpack_from("<I", payload)
    return version, payload[4:].decode(errors="replace")


def parse_error(payload: bytes) -> tuple[int, str]:
    _at_least(payload, 4, "ERROR")
    (errno_,) = struct.unpack_from("<i", payload)
    return errno_, payload[4:].decode(errors="replace")


def parse_u32(payload: bytes) -> int:
    _exact(payload, 4, "OK")
    value: int = struct.unpack("<I", payload)[0]
    return value


def parse_u32_list(payload: bytes) -> list[int]:
    if len(payload) % 4:
        raise ProtocolError(f"a list of u32 in {len(payload)} bytes")
    return list(struct.unpack(f"<{len(payload) // 4}I", payload))


def parse_exit(payload: bytes) -> int:
    """The container's exit code from a raw wait status: the code, or 128+signal."""
    _exact(payload, 4, "EXIT")
    status: int = struct.unpack("<i", payload)[0]
    if status & 0x7F == 0:
        return (status >> 8) & 0xFF
    return 128 + (status & 0x7F)
