"""The container's network, joined to its VM: one tap per interface of the netns.

An engine gives the container a network namespace holding, say, a veth whose
peer sits on a bridge (docker moves it in from its prestart hook; CNI plugins
do the same). The VM cannot use that veth directly, so for each such interface
`setup()`, run inside that namespace (the shim lives there), makes a tap device
(`tap0_runv`, `tap1_runv`, ...) for QEMU and joins the two with tc, as Kata's
"tcfilter" networking and runV do: an `ingress` qdisc on both, and on each a
`u32 match u32 0 0` filter whose action is `mirred egress redirect` to the other.
Every frame that arrives on one leaves by the other, untouched. (`matchall`
and `flower` would do too, but are not in every kernel.)

The guest's NIC takes the veth's MAC address (the bridge and its neighbours
already know it), its MTU and its addresses, and the guest adds the routes; so
`setup()` returns all that per interface. It then removes the addresses from
the veth: the redirect already keeps every incoming frame from the namespace's
own stack, but an address left there would still make that stack speak for the
guest's address (IPv6 duplicate address detection and router solicitations,
gratuitous ARP), from the guest's MAC. Kata's tcfilter mode leaves them; its
macvtap mode clears them "to prevent ARP conflict" and puts them back when the
VM goes, and so does runv. In case the shim dies before its `teardown()` while
the namespace lives on (a CNI or `ctr --with-ns` namespace), the veth's alias
keeps the addresses and routes, and the next `setup()` starts from those.

A namespace whose tap a QEMU still holds belongs to another VM: `setup()`
refuses it (two VMs cannot share one NIC, so containers cannot share a network
namespace). So does the host's namespace (`--network host`): handing the
host's NICs to a VM would take the host off its own network.

The shim opens each tap (`open_tap`) and hands the fd to QEMU, `-netdev tap,fd=N`
and `-device virtio-net-device,mac=<veth mac>` (runv.sandbox.boot.nic_device): QEMU, in its
jail, has neither /dev/net/tun nor NET_ADMIN.

The netlink work goes through runv.host.rtnetlink, a plain NETLINK_ROUTE
socket and `struct` (pyroute2 took 130+ ms to import, on every start and again
at teardown). It is imported inside the functions all the same, so the light
commands (`state`, `kill`, ...) load nothing of it. The shim runs setup() and
teardown() in a forked child (`apart`), so that nothing of the namespace's
work stays in the long-lived shim.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from runv.errors import RunvError

if TYPE_CHECKING:
    from runv.host.rtnetlink import IfAddress, Link, Rtnl

TAP_SUFFIX = "_runv"

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000

ETH_P_ALL = 0x0003
ARPHRD_ETHER = 1
IFF_LOOPBACK = 0x8
AF_INET, AF_INET6 = 2, 10
RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
RTN_UNICAST = 1
FILTER_PRIO = 49152  # tc's default for the first filter; fixed, so that teardown can find ours

# Interfaces that a namespace may hold but that are no container NIC: the
# fallback devices some tunnel modules put in every namespace, and taps.
SKIP_KINDS = frozenset({"gretap", "erspan", "ip6gretap", "ip6erspan", "tun"})


class NetworkError(RunvError):
    """The container's network could not be joined to the VM."""


@dataclass(frozen=True)
class Address:
    family: int        # 4 or 6
    address: str
    prefixlen: int

    def __str__(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class Route:
    family: int          # 4 or 6
    dst: str             # "0.0.0.0" or "::" for the default route
    prefixlen: int
    gateway: str | None  # None: the destination is on the link
    proto: int = 3       # who made it (RTPROT_BOOT: `ip route add`), given back as found

    def __str__(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        return f"{self.dst}/{self.prefixlen}{via}"


@dataclass
class Nic:
    """One interface of the container's namespace and the tap that stands for it."""
    ifname: str                 # its name in the namespace (eth0): the guest NIC's name too
    tap: str                    # the tap QEMU opens (tap0_runv)
    mac: str                    # the veth's MAC: the guest NIC's MAC
    mtu: int
    addresses: list[Address] = field(default_factory=list)
    # The routes out of this interface, link routes first, without those the
    # kernel makes by itself for an address (the prefix route, IPv6 link-local).
    routes: list[Route] = field(default_factory=list)



# ---------------------------------------------------------------- the tap

def _make_tap(name: str) -> None:
    """A persistent tap in the current network namespace, owned by nobody in particular."""
    ifr = struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)


def open_tap(name: str) -> int:
    """An fd on the tap, for QEMU (`-netdev tap,fd=N`), with the virtio-net
    header QEMU asks for when it opens a tap itself."""
    ifr = struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError as e:
        os.close(fd)
        raise NetworkError(f"cannot open tap {name}: {e.strerror}") from None
    return fd


# ---------------------------------------------------------------- reading the namespace

def _candidates(rt: Rtnl) -> list[Link]:
    """The namespace's NICs, in index order: not lo, not a tunnel's fallback, not ours."""
    found = []
    for link in rt.links():
        if link.flags & IFF_LOOPBACK or link.type != ARPHRD_ETHER:
            continue
        if link.name.endswith(TAP_SUFFIX) or link.kind in SKIP_KINDS:
            continue
        found.append(link)
    return sorted(found, key=lambda link: link.ifindex)


def _taps(rt: Rtnl) -> list[Link]:
    return [link for link in rt.links() if link.name.endswith(TAP_SUFFIX)]


def _is_link_local6(address: str) -> bool:
    return address.lower().startswith(("fe8", "fe9", "fea", "feb"))


def _addresses(rt: Rtnl, index: int) -> list[tuple[Address, IfAddress]]:
    out = []
    for msg in rt.addresses(index):
        family = {AF_INET: 4, AF_INET6: 6}.get(msg.family)
        if family is None or msg.address is None:
            continue
        out.append((Address(family, msg.address, msg.prefixlen), msg))
    return out


def _routes(rt: Rtnl, index: int) -> list[Route]:
    routes = []
    for family, af in ((4, AF_INET), (6, AF_INET6)):
        for msg in rt.routes(af):
            if msg.table != RT_TABLE_MAIN or msg.type != RTN_UNICAST or msg.proto == RTPROT_KERNEL:
                continue
            gateway = msg.gateway
            if msg.oif is None:  # multipath: keep it if one of its hops leaves here
                hop = next((h for h in msg.hops if h.ifindex == index), None)
                if hop is None:
                    continue
                gateway = hop.gateway
            elif msg.oif != index:
                continue
            dst = msg.dst or ("0.0.0.0" if family == 4 else "::")
            if family == 6 and (_is_link_local6(dst) or dst.lower().startswith("ff")):
                continue
            routes.append(Route(family, dst, msg.dst_len, gateway, msg.proto))
    # Link routes first: a gateway must be reachable before a route can use it.
    return sorted(routes, key=lambda r: (r.gateway is not None, r.family, -r.prefixlen))


# ---------------------------------------------------------------- tc

def _add_ingress(rt: Rtnl, index: int) -> None:
    from runv.host.rtnetlink import NetlinkError

    try:
        rt.add_ingress(index)
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise


def _redirect(rt: Rtnl, src: int, dst: int) -> None:
    """tc filter add dev SRC parent ffff: protocol all prio FILTER_PRIO u32 match u32 0 0
       action mirred egress redirect dev DST"""
    rt.add_redirect(src, dst, FILTER_PRIO, ETH_P_ALL)


# ---------------------------------------------------------------- setup and teardown

PROC_NET_INIT_INO = 0xEFFFFFF9  # the initial network namespace's inode (<linux/proc_ns.h>)


def in_host_namespace() -> bool:
    """Is this process in the host's network namespace: the kernel's initial one,
    or pid 1's (when runv itself runs in a container)?"""
    mine = os.stat("/proc/self/ns/net").st_ino
    if mine == PROC_NET_INIT_INO:
        return True
    try:
        return mine == os.stat("/proc/1/ns/net").st_ino
    except OSError:  # pid 1 may be out of reach
        return False


def setup() -> list[Nic]:
    """Join every NIC of the current network namespace to a new tap; see the module doc.

    Run it in the container's namespace, after the prestart hooks (docker's
    moves the veth in then). A namespace with only `lo` gives []. On failure,
    whatever it made is removed again and NetworkError says what went wrong.

    It refuses to run in the host's namespace (a config without a network
    namespace, as with `docker run --network host`): it would hand the host's
    own NICs and addresses to the VM.
    """
    if in_host_namespace():
        raise NetworkError("the container has no network namespace of its own; "
                           "a VM cannot share the host's network (--network host)")
    from runv.host.rtnetlink import NetlinkError, Rtnl

    nics: list[Nic] = []
    with Rtnl() as rt:
        taps = _taps(rt)
        if any(link.carrier for link in taps):
            # A QEMU holds one: another VM took this namespace's NICs (a second
            # container in a shared namespace, say). Its NICs cannot be had twice.
            raise NetworkError("the network namespace is already joined to another container's VM")
        if taps:  # left by a shim that died before its teardown: undo that setup first
            _teardown(rt, _leftovers(rt))
        current = ""
        try:
            for n, link in enumerate(_candidates(rt)):
                index = link.ifindex
                current = link.name
                addresses = _addresses(rt, index)
                nic = Nic(ifname=current, tap=f"tap{n}{TAP_SUFFIX}", mac=link.mac or "", mtu=link.mtu or 0,
                          addresses=[a for a, _ in addresses
                                     if not (a.family == 6 and _is_link_local6(a.address))],
                          routes=_routes(rt, index))
                if not nic.addresses and not nic.routes:
                    # A namespace that outlived an earlier VM whose shim died
                    # before its teardown: the veth's alias remembers its config.
                    nic.addresses, nic.routes = _from_alias(link.alias)
                _make_tap(nic.tap)
                nics.append(nic)
                tap = rt.link_index(nic.tap)
                if tap is None:
                    raise NetlinkError(errno.ENODEV)
                rt.set_link(tap, mtu=nic.mtu, up=True)
                rt.set_link(index, up=True)
                _add_ingress(rt, tap)
                _add_ingress(rt, index)
                _redirect(rt, index, tap)
                _redirect(rt, tap, index)
                # The guest owns the addresses now (and with them the routes, read
                # above); teardown() puts them back.
                alias = _to_alias(nic)
                if alias:
                    rt.set_link(index, alias=alias)
                for a, _ in addresses:
                    if a.family == 6 and _is_link_local6(a.address):
                        continue  # the kernel's own; the guest makes its own too
                    rt.del_address(index, a.address, a.prefixlen)
        except (NetlinkError, OSError) as e:
            _teardown(rt, nics)
            reason = os.strerror(e.code) if isinstance(e, NetlinkError) else e.strerror
            raise NetworkError(f"cannot join {current or 'the container network'} to the VM: {reason}") from None
    return nics


def apart(fn: Callable[[], list[Nic] | None]) -> list[Nic]:
    """fn() (setup or teardown) in a forked child that dies with the caller; its
    NICs, or its error, come back through a pipe."""
    import signal

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # never returns: nothing of the shim may run twice
        try:
            os.close(r)
            try:
                from runv.host import syscalls

                syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
                reply: dict[str, Any] = {"nics": [asdict(n) for n in fn() or []]}
            except RunvError as e:
                reply = {"error": str(e)}
            except BaseException as e:  # noqa: BLE001 - said to the parent, never a traceback
                reply = {"error": f"{type(e).__name__}: {e}"}
            with os.fdopen(w, "w") as f:
                f.write(json.dumps(reply))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    os.waitpid(pid, 0)
    try:
        reply = json.loads(text)
    except ValueError:
        reply = {"error": "the network helper died"}
    if "error" in reply:
        raise NetworkError(reply["error"])
    return [_nic(d) for d in reply["nics"]]


def _nic(d: dict[str, Any]) -> Nic:
    return Nic(**{**d, "addresses": [Address(**a) for a in d["addresses"]],
                  "routes": [Route(**r) for r in d["routes"]]})


def teardown(nics: list[Nic] | None = None) -> None:
    """Undo setup(): delete the taps, take the ingress qdisc off the interfaces they
    stood for and give those back their addresses and routes. With nics None, every
    `*_runv` tap of the namespace goes, and the config comes from the interfaces'
    aliases. Safe to repeat."""
    from runv.host.rtnetlink import Rtnl

    with Rtnl() as rt:
        if nics is None:
            nics = _leftovers(rt)
        _teardown(rt, nics)


ANY_TAP = "*"  # recorded while setup() runs: every `*_runv` tap of the namespace is the shim's


def teardown_recorded(taps: dict[str, str]) -> None:
    """Undo setup() for the taps a shim recorded (tap -> interface) and did not
    take down itself (it died): the interfaces' config comes from their aliases.
    ANY_TAP (the shim died during setup()): all of the namespace's leftovers,
    unless a live QEMU holds a tap there (setup() would have refused it)."""
    from runv.host.rtnetlink import Rtnl

    with Rtnl() as rt:
        found = _leftovers(rt)
        if ANY_TAP in taps:
            if any(link.carrier for link in _taps(rt)):
                return
        else:
            found = [n for n in found if n.tap in taps or n.ifname in taps.values()]
        _teardown(rt, found)


def _leftovers(rt: Rtnl) -> list[Nic]:
    nics = [Nic(ifname="", tap=link.name, mac="", mtu=0) for link in _taps(rt)]
    for link in _candidates(rt):
        if _redirects(rt, link.ifindex) or (link.alias or "").startswith(ALIAS_PREFIX):
            addresses, routes = _from_alias(link.alias)
            nics.append(Nic(ifname=link.name, tap="", mac="", mtu=0, addresses=addresses, routes=routes))
    return nics


def _redirects(rt: Rtnl, index: int) -> bool:
    """Does the interface carry an ingress qdisc (ours, or at least one like it)?"""
    return any(q.kind == "ingress" for q in rt.qdiscs(index))


def _teardown(rt: Rtnl, nics: list[Nic]) -> None:
    from runv.host.rtnetlink import NetlinkError

    def tolerant(call: Any, *args: Any, ok: tuple[int, ...] = (errno.ENODEV, errno.ENOENT, errno.EINVAL, errno.EEXIST,
                                  errno.EADDRNOTAVAIL, errno.ENETUNREACH), **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except NetlinkError as e:
            if e.code not in ok:
                raise

    for nic in nics:
        tap = rt.link_index(nic.tap) if nic.tap else None
        if tap is not None:
            tolerant(rt.del_link, tap)
        index = rt.link_index(nic.ifname) if nic.ifname else None
        if index is None:
            continue
        if _redirects(rt, index):
            tolerant(rt.del_ingress, index)
        present = {(a.address, a.prefixlen) for a, _ in _addresses(rt, index)}
        for a in nic.addresses:
            if (a.address, a.prefixlen) not in present:
                tolerant(rt.add_address, index, a.address, a.prefixlen)
        for r in nic.routes:
            tolerant(rt.add_route, r.dst, r.prefixlen, index, r.gateway, r.proto)
        tolerant(rt.set_link, index, alias="")


# ---------------------------------------------------------------- the veth's memory

ALIAS_PREFIX = "runv:"
IFALIASZ = 255


def _to_alias(nic: Nic) -> str:
    """The NIC's addresses and routes, short enough for an interface alias, or ""."""
    text = ALIAS_PREFIX + json.dumps(
        {"a": [str(a) for a in nic.addresses],
         "r": [[f"{r.dst}/{r.prefixlen}", r.gateway, *([r.proto] if r.proto != 3 else [])]
               for r in nic.routes]}, separators=(",", ":"))
    return text if len(text.encode()) <= IFALIASZ else ""


def _from_alias(alias: str | None) -> tuple[list[Address], list[Route]]:
    if not alias or not alias.startswith(ALIAS_PREFIX):
        return [], []
    try:
        data = json.loads(alias[len(ALIAS_PREFIX):])
        addresses = []
        for text in data["a"]:
            address, prefixlen = text.rsplit("/", 1)
            addresses.append(Address(6 if ":" in address else 4, address, int(prefixlen)))
        routes = []
        for dst, gateway, *proto in data["r"]:
            dst, prefixlen = dst.rsplit("/", 1)
            routes.append(Route(6 if ":" in dst else 4, dst, int(prefixlen), gateway, int(proto[0]) if proto else 3))
        return addresses, routes
    except (ValueError, KeyError, TypeError):
        return [], []


# ---------------------------------------------------------------- the guest's side
