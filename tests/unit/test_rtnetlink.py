"""runv.host.rtnetlink's encoding and decoding, and its request loop against a
fake socket: what the kernel would send, and what it never should."""
from __future__ import annotations

import errno
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runv.host import rtnetlink as rt
from runv.host.rtnetlink import NetlinkError, ProtocolError

kinds = st.integers(min_value=0, max_value=rt.NLA_TYPE_MASK)
values = st.binary(max_size=40)
attr_lists = st.lists(st.tuples(kinds, values), max_size=8)


# ---------------------------------------------------------------- attributes

def test_an_attribute_is_padded_to_four_bytes_and_its_length_is_unpadded():
    assert rt.attr(7, b"abc") == struct.pack("=HH", 7, 7) + b"abc\0"
    assert rt.attr(7, b"") == struct.pack("=HH", 4, 7)
    assert rt.attr(7, b"abcd") == struct.pack("=HH", 8, 7) + b"abcd"
    assert len(rt.attr(1, b"x" * 5)) == 12


@pytest.mark.property
@given(attr_lists)
def test_attributes_come_back_as_packed(pairs):
    data = b"".join(rt.attr(k, v) for k, v in pairs)
    assert len(data) % 4 == 0
    assert rt.attrs(data) == pairs


@pytest.mark.property
@given(kinds, attr_lists, attr_lists)
def test_nested_attributes_come_back_as_packed(kind, inner, after):
    data = rt.nest(kind, *(rt.attr(k, v) for k, v in inner)) + b"".join(rt.attr(k, v) for k, v in after)
    (outer_kind, payload), *rest = rt.attrs(data)
    assert outer_kind == kind and rt.attrs(payload) == inner and rest == after


def test_the_nested_and_byte_order_flags_are_not_part_of_the_type():
    data = struct.pack("=HH", 8, 0x8000 | 18) + b"abcd" + struct.pack("=HH", 4, 0x4000 | 3)
    assert rt.attrs(data) == [(18, b"abcd"), (3, b"")]


@pytest.mark.parametrize("data", [
    struct.pack("=HH", 3, 1),                   # shorter than its own header
    struct.pack("=HH", 0, 1) + b"\0" * 8,       # length 0: would never move on
    struct.pack("=HH", 12, 1) + b"abcd",        # runs past the buffer
    rt.attr(1, b"abcd") + b"\0\0",              # stray bytes after the last
])
def test_a_broken_attribute_list_raises(data):
    with pytest.raises(ProtocolError) as e:
        rt.attrs(data)
    assert e.value.code == errno.EPROTO and "malformed netlink reply" in str(e.value)


# ---------------------------------------------------------------- messages

messages = st.lists(st.tuples(st.integers(16, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF),
                              st.binary(max_size=40)), min_size=1, max_size=5)


@pytest.mark.property
@given(messages)
def test_messages_come_back_as_packed(found):
    data = b"".join(rt.message(t, f, s, p) + b"\0" * (-len(p) % 4) for t, f, s, p in found)
    assert [(m.type, m.flags, m.seq, m.payload) for m in rt.messages(data)] == found


@pytest.mark.property
@given(messages, st.data())
def test_a_cut_datagram_raises(found, data):
    whole = b"".join(rt.message(t, f, s, p) + b"\0" * (-len(p) % 4) for t, f, s, p in found)
    ends = set()  # where a message ends, with or without its padding
    pos = 0
    for *_, p in found:
        ends |= set(range(pos + 16 + len(p), pos + 16 + len(p) + (-len(p) % 4) + 1))
        pos += 16 + len(p) + (-len(p) % 4)
    cut = data.draw(st.integers(1, len(whole) - 1).filter(lambda n: n not in ends))
    with pytest.raises(ProtocolError):
        rt.messages(whole[:cut])


@pytest.mark.property
@given(st.binary(max_size=200))
def test_garbage_parses_or_raises_a_protocol_error(data):
    for parse in (rt.messages, rt.attrs, rt.decode_link, rt.decode_address, rt.decode_route, rt.decode_qdisc):
        try:
            parse(data)
        except ProtocolError:
            pass


# ---------------------------------------------------------------- objects

def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def test_a_link():
    payload = (rt.IFINFOMSG.pack(0, 1, 7, 0x1043, 0)
               + rt.attr(rt.IFLA_IFNAME, rt.string("eth0"))
               + rt.attr(rt.IFLA_ADDRESS, _mac("02:42:ac:11:00:02"))
               + rt.attr(rt.IFLA_MTU, rt.u32(1400))
               + rt.attr(rt.IFLA_CARRIER, b"\1")
               + rt.attr(rt.IFLA_IFALIAS, b"runv:{}")
               + rt.nest(rt.IFLA_LINKINFO, rt.attr(rt.IFLA_INFO_KIND, rt.string("veth"))))
    assert rt.decode_link(payload) == rt.Link(ifindex=7, name="eth0", type=1, flags=0x1043, mac="02:42:ac:11:00:02",
                                              mtu=1400, carrier=True, alias="runv:{}", kind="veth")
    bare = rt.decode_link(rt.IFINFOMSG.pack(0, 772, 1, 8, 0) + rt.attr(rt.IFLA_IFNAME, rt.string("lo")))
    assert (bare.name, bare.mac, bare.mtu, bare.carrier, bare.alias, bare.kind) == ("lo", None, None, False, None, None)


def test_addresses_of_both_families():
    v4 = rt.decode_address(rt.IFADDRMSG.pack(socket.AF_INET, 24, 0, 0, 3)
                           + rt.attr(rt.IFA_ADDRESS, socket.inet_aton("10.0.0.2"))
                           + rt.attr(rt.IFA_LOCAL, socket.inet_aton("10.0.0.2")))
    assert v4 == rt.IfAddress(socket.AF_INET, 24, 3, "10.0.0.2", "10.0.0.2")
    v6 = rt.decode_address(rt.IFADDRMSG.pack(socket.AF_INET6, 64, 0, 0, 3)
                           + rt.attr(rt.IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, "fd42::2")))
    assert v6 == rt.IfAddress(socket.AF_INET6, 64, 3, "fd42::2", None)


def test_an_address_of_the_wrong_size_raises():
    with pytest.raises(ProtocolError):
        rt.decode_address(rt.IFADDRMSG.pack(socket.AF_INET, 24, 0, 0, 3) + rt.attr(rt.IFA_ADDRESS, b"\1\2\3"))


def test_a_route_and_a_multipath_route():
    payload = (rt.RTMSG.pack(socket.AF_INET, 16, 0, 0, 254, 3, 0, 1, 0)
               + rt.attr(rt.RTA_TABLE, rt.u32(254)) + rt.attr(rt.RTA_DST, socket.inet_aton("10.99.0.0"))
               + rt.attr(rt.RTA_GATEWAY, socket.inet_aton("10.0.0.1")) + rt.attr(rt.RTA_OIF, rt.u32(3)))
    assert rt.decode_route(payload) == rt.RouteEntry(socket.AF_INET, 16, 254, 3, 0, 1, "10.99.0.0", "10.0.0.1", 3)

    def hop(index, gateway):
        attrs = rt.attr(rt.RTA_GATEWAY, socket.inet_aton(gateway))
        return rt.RTNEXTHOP.pack(rt.RTNEXTHOP.size + len(attrs), 0, 0, index) + attrs
    multipath = (rt.RTMSG.pack(socket.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0)
                 + rt.attr(rt.RTA_MULTIPATH, hop(3, "10.0.0.1") + hop(4, "10.0.1.1")))
    route = rt.decode_route(multipath)
    assert (route.dst, route.oif, route.hops) == (None, None, (rt.Hop(3, "10.0.0.1"), rt.Hop(4, "10.0.1.1")))
    with pytest.raises(ProtocolError):
        rt.decode_route(rt.RTMSG.pack(socket.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0)
                        + rt.attr(rt.RTA_MULTIPATH, rt.RTNEXTHOP.pack(64, 0, 0, 3)))


def test_a_table_above_255_comes_from_rta_table():
    payload = rt.RTMSG.pack(socket.AF_INET6, 0, 0, 0, 252, 3, 0, 1, 0) + rt.attr(rt.RTA_TABLE, rt.u32(1000))
    assert rt.decode_route(payload).table == 1000


def test_a_qdisc():
    payload = rt.TCMSG.pack(0, 5, rt.INGRESS_HANDLE, rt.TC_H_INGRESS, 1) + rt.attr(rt.TCA_KIND, rt.string("ingress"))
    assert rt.decode_qdisc(payload) == rt.Qdisc(5, rt.INGRESS_HANDLE, rt.TC_H_INGRESS, "ingress")


def test_the_redirect_filter_is_what_tc_sends():
    """tc filter add dev 5 parent ffff: protocol all prio 49152 u32 match u32 0 0
    action mirred egress redirect dev 9"""
    payload = rt.redirect_filter(5, 9, 49152, 0x0003)
    family, index, handle, parent, info = rt.TCMSG.unpack_from(payload)
    assert (family, index, handle, parent) == (0, 5, 0, 0xFFFF0000)
    assert info >> 16 == 49152 and info & 0xFFFF == socket.htons(0x0003)
    top = rt.attr_map(payload[rt.TCMSG.size:])
    assert top[rt.TCA_KIND] == b"u32\0"
    options = rt.attr_map(top[rt.TCA_OPTIONS])
    assert set(options) == {rt.TCA_U32_SEL, rt.TCA_U32_ACT}  # no classid: tc gives none
    sel = options[rt.TCA_U32_SEL]
    assert len(sel) == 16 + 16  # struct tc_u32_sel and its one key
    assert rt.TC_U32_SEL.unpack_from(sel) == (rt.TC_U32_TERMINAL, 0, 1, 0, 0, 0, 0, 0)
    assert rt.TC_U32_KEY.unpack_from(sel, 16) == (0, 0, 0, 0)
    [(prio, action)] = rt.attrs(options[rt.TCA_U32_ACT])
    assert prio == 1
    action_attrs = rt.attr_map(action)
    assert action_attrs[rt.TCA_ACT_KIND] == b"mirred\0"
    parms = rt.attr_map(action_attrs[rt.TCA_ACT_OPTIONS])[rt.TCA_MIRRED_PARMS]
    assert rt.TC_MIRRED.unpack(parms) == (0, 0, rt.TC_ACT_STOLEN, 0, 0, rt.TCA_EGRESS_REDIR, 9)


# ---------------------------------------------------------------- the request loop

class FakeSocket:
    """Answers each request with the datagrams `reply(seq)` gives, from `sender`."""

    def __init__(self, reply, sender=0, flags=0):
        self.reply, self.sender, self.flags = reply, sender, flags
        self.sent: list[bytes] = []
        self.queue: list[bytes] = []

    def sendto(self, data, address):
        self.sent.append(data)
        self.queue.extend(self.reply(struct.unpack_from("=IHHII", data)[3]))

    def recvmsg(self, size):
        assert self.queue, "the request loop read past the answer: it would block for ever"
        return self.queue.pop(0)[:size], [], self.flags, (self.sender, 0)

    def close(self):
        pass


def fake(reply, **kwargs) -> rt.Rtnl:
    nl = object.__new__(rt.Rtnl)
    nl._sock = FakeSocket(reply, **kwargs)
    nl._seq = 0
    return nl


def ack(seq: int, status: int = 0) -> bytes:
    return rt.message(rt.NLMSG_ERROR, 0, seq, struct.pack("=i", status) + b"\0" * 16)


def done(seq: int, status: int = 0) -> bytes:
    return rt.message(rt.NLMSG_DONE, rt.NLM_F_MULTI, seq, struct.pack("=i", status))


def link(seq: int, index: int, name: str) -> bytes:
    return rt.message(rt.RTM_NEWLINK, rt.NLM_F_MULTI, seq,
                      rt.IFINFOMSG.pack(0, 1, index, 0, 0) + rt.attr(rt.IFLA_IFNAME, rt.string(name)))


def test_a_request_asks_for_an_ack_and_an_error_carries_its_errno():
    nl = fake(lambda seq: [ack(seq, -errno.EEXIST)])
    with pytest.raises(NetlinkError) as e:
        nl.add_ingress(3)
    assert e.value.code == errno.EEXIST and str(e.value) == "File exists"
    assert not isinstance(e.value, ProtocolError)
    _, type_, flags, _, _ = struct.unpack_from("=IHHII", nl._sock.sent[0])
    assert type_ == rt.RTM_NEWQDISC
    assert flags == rt.NLM_F_REQUEST | rt.NLM_F_ACK | rt.NLM_F_CREATE | rt.NLM_F_EXCL


def test_a_dump_runs_over_datagrams_until_done():
    nl = fake(lambda seq: [link(seq, 1, "lo") + link(seq, 2, "eth0"), link(seq, 3, "eth1"), done(seq)])
    assert [(link.ifindex, link.name) for link in nl.links()] == [(1, "lo"), (2, "eth0"), (3, "eth1")]


def test_a_dump_that_fails_raises():
    nl = fake(lambda seq: [link(seq, 1, "lo"), done(seq, -errno.EINTR)])
    with pytest.raises(NetlinkError) as e:
        nl.links()
    assert e.value.code == errno.EINTR


def test_replies_to_other_requests_and_from_other_senders_are_skipped():
    nl = fake(lambda seq: [link(seq - 1, 9, "stale") + ack(seq - 1, -errno.ENOENT), link(seq, 1, "lo"), done(seq)])
    assert [link.name for link in nl.links()] == ["lo"]
    spoofed = fake(lambda seq: [ack(seq, -errno.EPERM)] * 3, sender=4242)
    with pytest.raises(AssertionError, match="read past the answer"):
        spoofed.del_link(3)  # none of the spoofed acks counts; the kernel's is still to come


def test_sequence_numbers_go_up():
    nl = fake(lambda seq: [ack(seq)])
    nl.del_link(3)
    nl.del_link(4)
    assert [struct.unpack_from("=IHHII", m)[3] for m in nl._sock.sent] == [1, 2]


def test_a_lookup_of_a_missing_link_is_none():
    assert fake(lambda seq: [ack(seq, -errno.ENODEV)]).link_index("eth9") is None
    nl = fake(lambda seq: [link(seq, 5, "eth9"), ack(seq)])  # the link, then the ACK
    assert nl.link_index("eth9") == 5
    assert nl.link_index("x" * 16) is None and nl.link_index("") is None
    assert len(nl._sock.sent) == 1  # names no link can have are not asked about


@pytest.mark.parametrize("reply, flags", [
    (lambda seq: [b""], 0),                                           # an empty datagram
    (lambda seq: [ack(seq)[:10]], 0),                                 # cut inside the header
    (lambda seq: [rt.message(rt.NLMSG_ERROR, 0, seq, b"\0\0")], 0),   # an error too short for its code
    (lambda seq: [ack(seq, 5)], 0),                                   # a positive "errno"
    (lambda seq: [rt.message(rt.NLMSG_OVERRUN, 0, seq, b"")], 0),
    (lambda seq: [ack(seq)], socket.MSG_TRUNC),                       # larger than the buffer
    (lambda seq: [struct.pack("=IHHII", 0, 2, 0, seq, 0) + b"\0" * 16], 0),  # length 0
])
def test_a_malformed_reply_raises_and_never_loops(reply, flags):
    with pytest.raises(ProtocolError):
        fake(reply, flags=flags).del_link(3)


def test_an_endless_stream_of_other_replies_stops(monkeypatch):
    monkeypatch.setattr(rt, "MAX_REPLY", 10_000)

    class Endless(FakeSocket):
        def recvmsg(self, size):
            return link(999, 1, "lo"), [], 0, (0, 0)
    nl = fake(lambda seq: [])
    nl._sock = Endless(lambda seq: [])
    with pytest.raises(ProtocolError, match="more than"):
        nl.links()


def test_requests_encode_what_ip_sends():
    nl = fake(lambda seq: [ack(seq)])
    nl.set_link(4, mtu=1400, up=True, alias="")
    nl.add_address(4, "fd42::2", 64)
    nl.add_route("10.50.0.0", 16, 4)
    nl.add_route("0.0.0.0", 0, 4, "10.0.0.1", proto=4)
    link_msg, addr_msg, route_msg, default_msg = (m[16:] for m in nl._sock.sent)
    _, _, index, flags, change = rt.IFINFOMSG.unpack_from(link_msg)
    assert (index, flags, change) == (4, rt.IFF_UP, rt.IFF_UP)
    assert rt.attrs(link_msg[16:]) == [(rt.IFLA_MTU, rt.u32(1400)), (rt.IFLA_IFALIAS, b"")]
    family, prefixlen, _, _, index = rt.IFADDRMSG.unpack_from(addr_msg)
    packed = socket.inet_pton(socket.AF_INET6, "fd42::2")
    assert (family, prefixlen, index) == (socket.AF_INET6, 64, 4)
    assert rt.attrs(addr_msg[8:]) == [(rt.IFA_LOCAL, packed), (rt.IFA_ADDRESS, packed)]
    fields = rt.RTMSG.unpack_from(route_msg)
    assert fields[:8] == (socket.AF_INET, 16, 0, 0, rt.RT_TABLE_MAIN, rt.RTPROT_BOOT, rt.RT_SCOPE_LINK, rt.RTN_UNICAST)
    assert rt.attr_map(route_msg[12:]) == {rt.RTA_OIF: rt.u32(4), rt.RTA_DST: socket.inet_aton("10.50.0.0")}
    fields = rt.RTMSG.unpack_from(default_msg)
    assert (fields[1], fields[5], fields[6]) == (0, 4, rt.RT_SCOPE_UNIVERSE)
    assert rt.attr_map(default_msg[12:]) == {rt.RTA_OIF: rt.u32(4), rt.RTA_GATEWAY: socket.inet_aton("10.0.0.1")}
