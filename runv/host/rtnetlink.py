"""rtnetlink requests and dumps on a plain NETLINK_ROUTE socket, for runv.host.network.

Just what joining a namespace's NICs to taps takes: links (dump, look up by
name, set MTU / up / alias, delete), addresses and routes (dump, add, delete),
the `ingress` qdisc and the one tc filter runv uses (u32 `match u32 0 0` with
`action mirred egress redirect`). Messages are packed with `struct` by the
layouts of <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>,
<linux/pkt_sched.h>, <linux/pkt_cls.h> and <linux/tc_act/tc_mirred.h>; nothing
heavy is imported (pyroute2 took 130+ ms to import, on every container start).

Every request asks for an ACK; an error comes back as NetlinkError, whose
`.code` is the positive errno. A dump is read until NLMSG_DONE. Replies are
matched by sequence number and must come from the kernel (port 0); one that
does not parse (a length that runs past its buffer, an attribute shorter than
its header, a datagram larger than the receive buffer) raises ProtocolError, a
NetlinkError with EPROTO, and never loops.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from typing import NamedTuple

# <linux/netlink.h>
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

# <linux/rtnetlink.h>
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTFILTER = 44
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 9, 15
RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1
RTPROT_BOOT = 3
TCA_KIND, TCA_OPTIONS = 1, 2

# <linux/if_link.h>, <linux/if.h>
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_CARRIER = 1, 3, 4, 18, 20, 33
IFLA_INFO_KIND = 1
IFF_UP = 0x1
IFNAMSIZ = 16

# <linux/if_addr.h>
IFA_ADDRESS, IFA_LOCAL = 1, 2

# <linux/pkt_sched.h>, <linux/pkt_cls.h>, <linux/tc_act/tc_mirred.h>
TC_H_INGRESS = 0xFFFFFFF1
INGRESS_HANDLE = 0xFFFF0000  # ffff:
TCA_U32_SEL, TCA_U32_ACT = 5, 7
TC_U32_TERMINAL = 1
TCA_ACT_KIND, TCA_ACT_OPTIONS = 1, 2
TCA_MIRRED_PARMS = 2
TC_ACT_STOLEN = 4
TCA_EGRESS_REDIR = 1

NLMSGHDR = struct.Struct("=IHHII")   # len, type, flags, seq, pid
NLATTR = struct.Struct("=HH")        # len, type
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
TCMSG = struct.Struct("=BxxxiIII")   # family, ifindex, handle, parent, info
RTNEXTHOP = struct.Struct("=HBBi")   # len, flags, hops, ifindex
TC_U32_SEL = struct.Struct("=BBBxHHhhI")  # flags, offshift, nkeys, offmask, off, offoff, hoff, hmask
TC_U32_KEY = struct.Struct("=IIii")  # mask, val (both big-endian: 0 here), off, offmask
TC_MIRRED = struct.Struct("=IIiiiiI")  # index, capab, action, refcnt, bindcnt, eaction, ifindex

RECV_BUFFER = 1 << 16     # the kernel's dump datagrams are 32 KiB at most
MAX_REPLY = 64 << 20      # the whole answer to one request


class NetlinkError(Exception):
    """The kernel refused a request: `code` is the positive errno."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message or os.strerror(code))
        self.code = code


class ProtocolError(NetlinkError):
    """A reply that does not parse."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EPROTO, f"malformed netlink reply: {message}")


# ---------------------------------------------------------------- encoding and decoding

def align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, value: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    length = NLATTR.size + len(value)
    return NLATTR.pack(length, kind) + value + b"\0" * (align(length) - length)


def nest(kind: int, *attrs: bytes) -> bytes:
    """A nested attribute (without NLA_F_NESTED, as iproute2 sends them)."""
    return attr(kind, b"".join(attrs))


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def string(value: str) -> bytes:
    return value.encode() + b"\0"


def attrs(data: bytes) -> list[tuple[int, bytes]]:
    """The attributes packed in `data`, in order, their types without flags."""
    out = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < NLATTR.size:
            raise ProtocolError(f"{len(data) - pos} stray bytes after the attributes")
        length, kind = NLATTR.unpack_from(data, pos)
        if length < NLATTR.size or pos + length > len(data):
            raise ProtocolError(f"attribute {kind & NLA_TYPE_MASK} of length {length} at {pos} of {len(data)}")
        out.append((kind & NLA_TYPE_MASK, data[pos + NLATTR.size:pos + length]))
        pos += align(length)
    return out


def attr_map(data: bytes) -> dict[int, bytes]:
    return dict(attrs(data))


class Message(NamedTuple):
    type: int
    flags: int
    seq: int
    pid: int
    payload: bytes


def message(type_: int, flags: int, seq: int, payload: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(payload), type_, flags, seq, 0) + payload


def messages(data: bytes) -> list[Message]:
    """The netlink messages of one datagram."""
    out = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < NLMSGHDR.size:
            raise ProtocolError(f"{len(data) - pos} stray bytes after the messages")
        length, type_, flags, seq, pid = NLMSGHDR.unpack_from(data, pos)
        if length < NLMSGHDR.size or pos + length > len(data):
            raise ProtocolError(f"message of length {length} at {pos} of {len(data)}")
        out.append(Message(type_, flags, seq, pid, data[pos + NLMSGHDR.size:pos + length]))
        pos += align(length)
    return out


def _header(st: struct.Struct, payload: bytes, what: str) -> tuple[tuple[int, ...], dict[int, bytes]]:
    if len(payload) < st.size:
        raise ProtocolError(f"{what} of {len(payload)} bytes")
    return st.unpack_from(payload), attr_map(payload[align(st.size):])


def _str(value: bytes | None) -> str | None:
    return None if value is None else value.split(b"\0", 1)[0].decode(errors="replace")


def _uint(value: bytes | None, what: str) -> int | None:
    if value is None:
        return None
    if len(value) not in (1, 2, 4):
        raise ProtocolError(f"{what} of {len(value)} bytes")
    return int.from_bytes(value, sys.byteorder)


def _ip(family: int, value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return socket.inet_ntop(family, value)
    except (ValueError, OSError):
        raise ProtocolError(f"address of {len(value)} bytes in family {family}") from None


def _family_ip(address: str) -> tuple[int, bytes]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return family, socket.inet_pton(family, address)


class Link(NamedTuple):
    ifindex: int
    name: str
    type: int              # ARPHRD_*
    flags: int             # IFF_*
    mac: str | None        # IFLA_ADDRESS, aa:bb:...
    mtu: int | None
    carrier: bool
    alias: str | None
    kind: str | None       # IFLA_LINKINFO's IFLA_INFO_KIND: "veth", "tun", ...


def decode_link(payload: bytes) -> Link:
    (_, type_, index, flags, _), a = _header(IFINFOMSG, payload, "ifinfomsg")
    info = attr_map(a[IFLA_LINKINFO]) if IFLA_LINKINFO in a else {}
    mac = a.get(IFLA_ADDRESS)
    return Link(ifindex=index, name=_str(a.get(IFLA_IFNAME)) or "", type=type_, flags=flags,
                mac=None if mac is None else ":".join(f"{b:02x}" for b in mac),
                mtu=_uint(a.get(IFLA_MTU), "IFLA_MTU"), carrier=bool(_uint(a.get(IFLA_CARRIER), "IFLA_CARRIER")),
                alias=_str(a.get(IFLA_IFALIAS)), kind=_str(info.get(IFLA_INFO_KIND)))


class IfAddress(NamedTuple):
    family: int            # AF_INET, AF_INET6
    prefixlen: int
    ifindex: int
    address: str | None    # IFA_ADDRESS
    local: str | None      # IFA_LOCAL


def decode_address(payload: bytes) -> IfAddress:
    (family, prefixlen, _, _, index), a = _header(IFADDRMSG, payload, "ifaddrmsg")
    if family not in (socket.AF_INET, socket.AF_INET6):
        return IfAddress(family, prefixlen, index, None, None)
    return IfAddress(family, prefixlen, index, _ip(family, a.get(IFA_ADDRESS)), _ip(family, a.get(IFA_LOCAL)))


class Hop(NamedTuple):
    ifindex: int
    gateway: str | None


class RouteEntry(NamedTuple):
    family: int
    dst_len: int
    table: int             # RTA_TABLE, else rtm_table
    proto: int
    scope: int
    type: int              # RTN_*
    dst: str | None
    gateway: str | None
    oif: int | None
    hops: tuple[Hop, ...] = ()  # RTA_MULTIPATH


def _hops(family: int, data: bytes) -> tuple[Hop, ...]:
    out = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < RTNEXTHOP.size:
            raise ProtocolError(f"{len(data) - pos} stray bytes after the next hops")
        length, _, _, index = RTNEXTHOP.unpack_from(data, pos)
        if length < RTNEXTHOP.size or pos + length > len(data):
            raise ProtocolError(f"next hop of length {length} at {pos} of {len(data)}")
        a = attr_map(data[pos + RTNEXTHOP.size:pos + length])
        out.append(Hop(index, _ip(family, a.get(RTA_GATEWAY))))
        pos += align(length)
    return tuple(out)


def decode_route(payload: bytes) -> RouteEntry:
    (family, dst_len, _, _, table, proto, scope, type_, _), a = _header(RTMSG, payload, "rtmsg")
    if family not in (socket.AF_INET, socket.AF_INET6):
        return RouteEntry(family, dst_len, table, proto, scope, type_, None, None, None)
    return RouteEntry(family=family, dst_len=dst_len, table=_uint(a.get(RTA_TABLE), "RTA_TABLE") or table,
                      proto=proto, scope=scope, type=type_, dst=_ip(family, a.get(RTA_DST)),
                      gateway=_ip(family, a.get(RTA_GATEWAY)), oif=_uint(a.get(RTA_OIF), "RTA_OIF"),
                      hops=_hops(family, a[RTA_MULTIPATH]) if RTA_MULTIPATH in a else ())


class Qdisc(NamedTuple):
    ifindex: int
    handle: int
    parent: int
    kind: str | None       # TCA_KIND


def decode_qdisc(payload: bytes) -> Qdisc:
    (_, index, handle, parent, _), a = _header(TCMSG, payload, "tcmsg")
    return Qdisc(index, handle, parent, _str(a.get(TCA_KIND)))


def redirect_filter(src: int, dst: int, prio: int, protocol: int) -> bytes:
    """The tcmsg of `tc filter add dev SRC parent ffff: protocol PROTOCOL prio PRIO
    u32 match u32 0 0 action mirred egress redirect dev DST`."""
    selector = TC_U32_SEL.pack(TC_U32_TERMINAL, 0, 1, 0, 0, 0, 0, 0) + TC_U32_KEY.pack(0, 0, 0, 0)
    mirred = TC_MIRRED.pack(0, 0, TC_ACT_STOLEN, 0, 0, TCA_EGRESS_REDIR, dst)
    action = nest(1, attr(TCA_ACT_KIND, string("mirred")),  # the first action of the list
                  nest(TCA_ACT_OPTIONS, attr(TCA_MIRRED_PARMS, mirred)))
    info = (prio << 16) | socket.htons(protocol)
    return (TCMSG.pack(socket.AF_UNSPEC, src, 0, INGRESS_HANDLE, info)
            + attr(TCA_KIND, string("u32"))
            + nest(TCA_OPTIONS, attr(TCA_U32_SEL, selector), nest(TCA_U32_ACT, action)))


# ---------------------------------------------------------------- the socket

class Rtnl:
    """A NETLINK_ROUTE socket in the current network namespace; a context manager."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # errors without our request echoed
        except OSError:
            pass
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exchange(self, type_: int, flags: int, payload: bytes) -> list[Message]:
        """Send one request, return the messages that answer it (without the ACK
        or NLMSG_DONE); NetlinkError for an error the kernel sent back."""
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        self._sock.sendto(message(type_, NLM_F_REQUEST | flags, seq, payload), (0, 0))
        replies: list[Message] = []
        received = 0
        while True:
            data, _, msg_flags, address = self._sock.recvmsg(RECV_BUFFER)
            if msg_flags & socket.MSG_TRUNC:
                raise ProtocolError(f"a datagram larger than {RECV_BUFFER} bytes")
            if not data:
                raise ProtocolError("an empty datagram")
            received += len(data)
            if received > MAX_REPLY:
                raise ProtocolError(f"more than {MAX_REPLY} bytes in answer to one request")
            if address[0] != 0:  # not from the kernel: another process's
                continue
            for m in messages(data):
                if m.seq != seq or m.type == NLMSG_NOOP:
                    continue  # left from an earlier request that failed midway
                if m.type == NLMSG_ERROR:
                    if len(m.payload) < 4:
                        raise ProtocolError(f"NLMSG_ERROR of {len(m.payload)} bytes")
                    status = struct.unpack_from("=i", m.payload)[0]
                    if status > 0:
                        raise ProtocolError(f"NLMSG_ERROR with status {status}")
                    if status:
                        raise NetlinkError(-status)
                    return replies  # the ACK
                if m.type == NLMSG_DONE:
                    if len(m.payload) >= 4 and (status := struct.unpack_from("=i", m.payload)[0]) < 0:
                        raise NetlinkError(-status)
                    return replies
                if m.type == NLMSG_OVERRUN:
                    raise ProtocolError("NLMSG_OVERRUN")
                replies.append(m)

    def request(self, type_: int, payload: bytes, flags: int = 0) -> list[Message]:
        return self._exchange(type_, NLM_F_ACK | flags, payload)

    def dump(self, type_: int, payload: bytes) -> list[Message]:
        """The objects a RTM_GET* dump gives: its RTM_NEW* messages."""
        return [m for m in self._exchange(type_, NLM_F_DUMP, payload) if m.type == type_ - 2]

    # ------------------------------------------------------------ links

    def links(self) -> list[Link]:
        return [decode_link(m.payload) for m in self.dump(RTM_GETLINK, IFINFOMSG.pack(0, 0, 0, 0, 0))]

    def link_index(self, name: str) -> int | None:
        """The index of the link called `name`, or None."""
        if not name or len(name.encode()) >= IFNAMSIZ:
            return None  # no link has such a name (and the kernel would refuse to look)
        try:
            found = self.request(RTM_GETLINK, IFINFOMSG.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, string(name)))
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise
        links = [decode_link(m.payload) for m in found if m.type == RTM_NEWLINK]
        return links[0].ifindex if links else None

    def set_link(self, index: int, *, mtu: int | None = None, up: bool = False, alias: str | None = None) -> None:
        """`ip link set dev INDEX [mtu MTU] [up] [alias ALIAS]` ("" removes the alias)."""
        payload = IFINFOMSG.pack(0, 0, index, IFF_UP if up else 0, IFF_UP if up else 0)
        if mtu is not None:
            payload += attr(IFLA_MTU, u32(mtu))
        if alias is not None:
            payload += attr(IFLA_IFALIAS, alias.encode())  # its length is the alias's: no NUL
        self.request(RTM_NEWLINK, payload)

    def del_link(self, index: int) -> None:
        self.request(RTM_DELLINK, IFINFOMSG.pack(0, 0, index, 0, 0))

    # ------------------------------------------------------------ addresses

    def addresses(self, index: int | None = None) -> list[IfAddress]:
        found = [decode_address(m.payload) for m in self.dump(RTM_GETADDR, IFADDRMSG.pack(0, 0, 0, 0, 0))]
        return [a for a in found if index is None or a.ifindex == index]

    def _address(self, type_: int, index: int, address: str, prefixlen: int, flags: int = 0) -> None:
        family, packed = _family_ip(address)
        self.request(type_, IFADDRMSG.pack(family, prefixlen, 0, 0, index)
                     + attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed), flags)

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """`ip addr add ADDRESS/PREFIXLEN dev INDEX`."""
        self._address(RTM_NEWADDR, index, address, prefixlen, NLM_F_CREATE | NLM_F_EXCL)

    def del_address(self, index: int, address: str, prefixlen: int) -> None:
        self._address(RTM_DELADDR, index, address, prefixlen)

    # ------------------------------------------------------------ routes

    def routes(self, family: int) -> list[RouteEntry]:
        """Every route of the family, of every table."""
        found = self.dump(RTM_GETROUTE, RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0))
        return [decode_route(m.payload) for m in found]

    def add_route(self, dst: str, dst_len: int, oif: int, gateway: str | None = None,
                  proto: int = RTPROT_BOOT) -> None:
        """`ip route add DST/DST_LEN [via GATEWAY] dev OIF proto PROTO` in table main:
        scope link without a gateway, as ip gives it."""
        family, packed = _family_ip(dst)
        scope = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
        payload = (RTMSG.pack(family, dst_len, 0, 0, RT_TABLE_MAIN, proto, scope, RTN_UNICAST, 0)
                   + attr(RTA_OIF, u32(oif)))
        if dst_len:
            payload += attr(RTA_DST, packed)
        if gateway:
            payload += attr(RTA_GATEWAY, _family_ip(gateway)[1])
        self.request(RTM_NEWROUTE, payload, NLM_F_CREATE | NLM_F_EXCL)

    # ------------------------------------------------------------ tc

    def qdiscs(self, index: int | None = None) -> list[Qdisc]:
        found = [decode_qdisc(m.payload) for m in self.dump(RTM_GETQDISC, TCMSG.pack(0, 0, 0, 0, 0))]
        return [q for q in found if index is None or q.ifindex == index]

    def add_ingress(self, index: int) -> None:
        """`tc qdisc add dev INDEX ingress` (handle ffff:)."""
        self.request(RTM_NEWQDISC, TCMSG.pack(0, index, INGRESS_HANDLE, TC_H_INGRESS, 0)
                     + attr(TCA_KIND, string("ingress")), NLM_F_CREATE | NLM_F_EXCL)

    def del_ingress(self, index: int) -> None:
        self.request(RTM_DELQDISC, TCMSG.pack(0, index, INGRESS_HANDLE, TC_H_INGRESS, 0)
                     + attr(TCA_KIND, string("ingress")))

    def add_redirect(self, src: int, dst: int, prio: int, protocol: int) -> None:
        """Every frame that arrives on SRC leaves by DST (see redirect_filter)."""
        self.request(RTM_NEWTFILTER, redirect_filter(src, dst, prio, protocol), NLM_F_CREATE | NLM_F_EXCL)
