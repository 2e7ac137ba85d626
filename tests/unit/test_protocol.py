"""Protocol framing, records, and agreement with the C header."""
import os
import re
import struct

import pytest

from runv.agent import protocol as P
from runv.agent.protocol import Msg, Tag

HEADER = os.path.join(os.path.dirname(__file__), "..", "..", "kernel", "agent", "proto.h")


def c_enum(name: str) -> dict[str, int]:
    text = open(HEADER).read()
    body = re.search(rf"enum {name} \{{(.*?)\}};", text, re.S).group(1)
    return {m[0]: int(m[1]) for m in re.findall(r"(\w+)\s*=\s*(\d+)", body)}


def c_define(name: str) -> str:
    return re.search(rf"#define {name} (\S+)", open(HEADER).read()).group(1)


def test_message_ids_match_header():
    assert c_enum("runv_msg") == {f"MSG_{m.name}": m.value for m in Msg}


def test_tags_match_header():
    assert c_enum("runv_tag") == {f"TAG_{t.name}": t.value for t in Tag}


def test_constants_match_header():
    assert int(c_define("RUNV_PROTO_VERSION")) == P.VERSION
    assert int(c_define("RUNV_HEADER_SIZE")) == P.HEADER_SIZE
    assert int(c_define("RUNV_MAX_PAYLOAD")) == P.MAX_PAYLOAD
    assert int(c_define("RUNV_WINDOW")) == P.WINDOW
    assert c_define("RUNV_PORT_NAME").strip('"') == P.PORT_NAME


def test_golden_frame():
    assert P.encode(Msg.SIGNAL, 1, P.signal_payload(15)) == bytes.fromhex(
        "04000000" "01000000" "08000000" "0f000000" "00000000")


def test_decoder_reassembles_split_frames():
    data = P.encode(Msg.STDOUT, 1, b"hello") + P.encode(Msg.EXIT, 1, struct.pack("<i", 3 << 8))
    d = P.Decoder()
    frames = []
    for i in range(len(data)):
        frames += d.feed(data[i:i + 1])
    assert frames == [P.Frame(Msg.STDOUT, 1, b"hello"), P.Frame(Msg.EXIT, 1, struct.pack("<i", 768))]
    assert P.parse_exit(frames[1].payload) == 3


def test_decoder_rejects_oversized_and_unknown():
    with pytest.raises(P.ProtocolError):
        P.Decoder().feed(struct.pack("<III", Msg.STDOUT, 1, P.MAX_PAYLOAD + 1))
    with pytest.raises(P.ProtocolError):
        P.Decoder().feed(struct.pack("<III", 999, 1, 0))
    with pytest.raises(P.ProtocolError):
        P.encode(Msg.STDIN, 1, b"x" * (P.MAX_PAYLOAD + 1))


def test_exit_status_from_signal():
    assert P.parse_exit(struct.pack("<i", 15)) == 143
    assert P.parse_exit(struct.pack("<i", 9)) == 137
    assert P.parse_exit(struct.pack("<i", 42 << 8)) == 42


def test_records_roundtrip():
    payload = P.rec_str(Tag.ARG, "echo") + P.rec_u32(Tag.UID, 1000) + P.rec_cstrs(Tag.SHARE, b"", "b0", "/x")
    assert P.decode_records(payload) == [
        (Tag.ARG, b"echo"), (Tag.UID, struct.pack("<I", 1000)), (Tag.SHARE, b"b0\0/x\0")]
    with pytest.raises(P.ProtocolError):
        P.decode_records(payload[:-1])


def test_fuzzed_input_never_crashes_the_decoder():
    import random

    rng = random.Random(7)
    for _ in range(2000):
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
        try:
            P.Decoder().feed(blob)
            P.decode_records(blob)
        except P.ProtocolError:
            pass
