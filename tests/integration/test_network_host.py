"""runv.host.network for real: a veth in a network namespace joined to a tap with tc.

Each test makes its own namespaces: "ct" stands for the container's (the veth
end docker or CNI would move in, as eth0), "peer" holds the other end (where a
bridge would be). Nothing touches the host's own namespace. The setup runs in
a forked child that has setns()'d into "ct", as the shim runs in it.
"""
from __future__ import annotations

import json
import os
import pickle
import select
import struct
import subprocess
import sys
import time
import traceback

import pytest

from runv.host import network, syscalls
from runv.sandbox.boot import nic_device

CT_ADDR, PEER_ADDR, PREFIX = "10.213.7.2", "10.213.7.1", 24
CT_ADDR6 = "fd42:7::2"


def ip(*args: str) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    assert r.returncode == 0, f"ip {' '.join(args)}: {r.stderr}"
    return r.stdout


def tc_in(ns: str, *args: str) -> str:
    r = subprocess.run(["ip", "netns", "exec", ns, "tc", *args], capture_output=True, text=True)
    assert r.returncode == 0, f"tc {' '.join(args)}: {r.stderr}"
    return r.stdout


def in_netns(ns: str, fn, *args):
    """fn(*args) in a forked child inside the named network namespace; its result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            syscalls.setns(f"/run/netns/{ns}", syscalls.CLONE_NEWNET)
            result = ("ok", fn(*args))
        except BaseException:
            result = ("error", traceback.format_exc())
        try:
            with os.fdopen(w, "wb") as f:
                pickle.dump(result, f)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    status, value = pickle.loads(data)
    if status == "error":
        raise AssertionError(f"in netns {ns}:\n{value}")
    return value


@pytest.fixture
def netns():
    """ct (with eth0: addresses, routes, MTU 1400) and peer (with the other end)."""
    tag = f"{os.getpid() % 100000}"
    ct, peer = f"runv-ct{tag}", f"runv-peer{tag}"
    ip("netns", "add", ct)
    ip("netns", "add", peer)
    try:
        ip("-n", peer, "link", "add", "veth-peer", "type", "veth", "peer", "name", "eth0", "netns", ct)
        ip("-n", peer, "addr", "add", f"{PEER_ADDR}/{PREFIX}", "dev", "veth-peer")
        ip("-n", peer, "link", "set", "veth-peer", "up")
        ip("-n", ct, "link", "set", "lo", "up")
        ip("-n", ct, "link", "set", "eth0", "mtu", "1400", "up")
        ip("-n", ct, "addr", "add", f"{CT_ADDR}/{PREFIX}", "dev", "eth0")
        ip("-n", ct, "addr", "add", f"{CT_ADDR6}/64", "dev", "eth0", "nodad")
        ip("-n", ct, "route", "add", "default", "via", PEER_ADDR)
        ip("-n", ct, "route", "add", "10.99.0.0/16", "via", "10.213.7.254")
        yield ct, peer
    finally:
        subprocess.run(["ip", "netns", "del", ct], capture_output=True)
        subprocess.run(["ip", "netns", "del", peer], capture_output=True)


def link_names(ns: str) -> list[str]:
    return sorted(line.split()[1].split("@")[0].rstrip(":")
                  for line in ip("-n", ns, "-o", "link", "show").splitlines())


def eth0_mac(ns: str) -> str:
    out = ip("-n", ns, "-o", "link", "show", "dev", "eth0")
    return out.split("link/ether ")[1].split()[0]


# ---------------------------------------------------------------- setup

def test_setup_joins_eth0_to_a_tap(netns):
    ct, _ = netns
    mac = eth0_mac(ct)
    nics = in_netns(ct, network.setup)

    assert len(nics) == 1
    nic = nics[0]
    assert (nic.ifname, nic.tap, nic.mac, nic.mtu) == ("eth0", "tap0_runv", mac, 1400)
    assert [str(a) for a in nic.addresses] == [f"{CT_ADDR}/{PREFIX}", f"{CT_ADDR6}/64"]
    # The routes out of eth0, link routes first; not the kernel's prefix routes.
    assert [str(r) for r in nic.routes if r.family == 4] == ["10.99.0.0/16 via 10.213.7.254", f"0.0.0.0/0 via {PEER_ADDR}"]
    assert all(r.prefixlen != PREFIX for r in nic.routes)
    assert nic_device(nic, 0, 7).args() == [
        "-netdev", "tap,id=net0,fd=7",
        "-device", f"virtio-net-device,netdev=net0,mac={mac}"]

    assert link_names(ct) == ["eth0", "lo", "tap0_runv"]
    tap = ip("-n", ct, "-o", "link", "show", "dev", "tap0_runv")
    assert "mtu 1400" in tap and ",UP" in tap
    assert "ingress ffff:" in tc_in(ct, "qdisc", "show", "dev", "eth0")
    assert "ingress ffff:" in tc_in(ct, "qdisc", "show", "dev", "tap0_runv")
    out = tc_in(ct, "filter", "show", "dev", "eth0", "ingress")
    assert "u32" in out and "match 00000000/00000000 at 0" in out
    assert "mirred (Egress Redirect to device tap0_runv)" in out
    out = tc_in(ct, "filter", "show", "dev", "tap0_runv", "ingress")
    assert "mirred (Egress Redirect to device eth0)" in out

    # The addresses now belong to the guest alone.
    addrs = ip("-n", ct, "-o", "addr", "show", "dev", "eth0")
    assert CT_ADDR not in addrs and CT_ADDR6 not in addrs, addrs
    # eth0 keeps its MAC: the guest NIC takes it.
    assert eth0_mac(ct) == mac


def test_setup_one_tap_per_interface(netns):
    ct, peer = netns
    ip("-n", peer, "link", "add", "veth-peer1", "type", "veth", "peer", "name", "eth1", "netns", ct)
    ip("-n", ct, "addr", "add", "10.213.8.2/24", "dev", "eth1")
    ip("-n", ct, "link", "set", "eth1", "up")
    nics = in_netns(ct, network.setup)
    assert [(n.ifname, n.tap) for n in nics] == [("eth0", "tap0_runv"), ("eth1", "tap1_runv")]
    assert [str(a) for a in nics[1].addresses] == ["10.213.8.2/24"]
    assert nics[1].routes == []
    assert "mirred (Egress Redirect to device tap1_runv)" in tc_in(ct, "filter", "show", "dev", "eth1", "ingress")


def test_only_loopback_gives_nothing():
    ns = f"runv-lo{os.getpid() % 100000}"
    ip("netns", "add", ns)
    try:
        ip("-n", ns, "link", "set", "lo", "up")
        assert in_netns(ns, network.setup) == []
        assert link_names(ns) == ["lo"]
    finally:
        ip("netns", "del", ns)


# ---------------------------------------------------------------- frames really flow

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _play_guest(peer: str) -> dict:
    """Set up, then act as the guest on the tap (as QEMU would hold it): answer the
    peer's ARP request and its ping with eth0's MAC and address."""
    import fcntl

    nics = network.setup()
    mac = bytes.fromhex(nics[0].mac.replace(":", ""))
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, network.TUNSETIFF, struct.pack("16sH", b"tap0_runv", network.IFF_TAP | network.IFF_NO_PI))
    ping = subprocess.Popen(["ip", "netns", "exec", peer, "busybox", "ping", "-c", "1", "-W", "10", CT_ADDR],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = {"arp": False, "icmp": False}
    me = bytes(map(int, CT_ADDR.split(".")))
    deadline = time.monotonic() + 15
    while not seen["icmp"] and time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.5)[0]:
            continue
        frame = os.read(fd, 65536)
        src, ethertype = frame[6:12], struct.unpack("!H", frame[12:14])[0]
        if ethertype == 0x0806 and frame[20:22] == b"\0\1" and frame[38:42] == me:  # who-has me
            sha, spa = frame[22:28], frame[28:32]
            reply = (src + mac + b"\x08\x06" + b"\0\1\x08\0\6\4\0\2" + mac + me + sha + spa)
            os.write(fd, reply)
            seen["arp"] = True
        elif ethertype == 0x0800 and frame[23] == 1 and frame[30:34] == me:  # ICMP to me
            ihl = (frame[14] & 0xF) * 4
            ip_hdr, icmp = bytearray(frame[14:14 + ihl]), bytearray(frame[14 + ihl:])
            if icmp[0] != 8:
                continue
            icmp[0], icmp[2:4] = 0, b"\0\0"
            icmp[2:4] = struct.pack("!H", _checksum(bytes(icmp)))
            ip_hdr[12:16], ip_hdr[16:20] = ip_hdr[16:20], ip_hdr[12:16]
            ip_hdr[10:12] = b"\0\0"
            ip_hdr[10:12] = struct.pack("!H", _checksum(bytes(ip_hdr)))
            os.write(fd, src + mac + b"\x08\x00" + bytes(ip_hdr) + bytes(icmp))
            seen["icmp"] = True
    out, _ = ping.communicate(timeout=20)
    os.close(fd)
    return {**seen, "ping_rc": ping.returncode, "ping": out}


def test_frames_flow_between_the_veth_and_the_tap(netns):
    ct, peer = netns
    result = in_netns(ct, _play_guest, peer)
    assert result["arp"], result          # the peer's ARP request came out of the tap
    assert result["icmp"], result         # and so did its ping, to the MAC the "guest" gave
    assert result["ping_rc"] == 0, result  # whose reply, written to the tap, got back


# ---------------------------------------------------------------- teardown

def assert_restored(ct: str) -> None:
    """eth0 as it was before setup: addresses, routes, no qdisc, no alias, no tap."""
    assert link_names(ct) == ["eth0", "lo"]
    assert "ingress" not in tc_in(ct, "qdisc", "show", "dev", "eth0")
    addrs = ip("-n", ct, "-o", "addr", "show", "dev", "eth0")
    assert f"{CT_ADDR}/{PREFIX}" in addrs and f"{CT_ADDR6}/64" in addrs, addrs
    routes = ip("-n", ct, "route", "show")
    assert f"default via {PEER_ADDR} dev eth0" in routes and "10.99.0.0/16 via 10.213.7.254 dev eth0" in routes, routes
    assert "alias" not in ip("-n", ct, "-o", "link", "show", "dev", "eth0")


def test_teardown_puts_eth0_back(netns):
    ct, _ = netns
    nics = in_netns(ct, network.setup)
    in_netns(ct, network.teardown, nics)
    assert_restored(ct)
    in_netns(ct, network.teardown, nics)  # again: nothing to do, no error
    assert_restored(ct)


def test_teardown_without_the_list_finds_it_all(netns):
    ct, _ = netns
    in_netns(ct, network.setup)
    in_netns(ct, network.teardown)
    assert_restored(ct)


def test_setup_again_after_a_shim_died(netns):
    """A namespace that outlived a shim that died before its teardown: the next
    setup starts over, and gets the addresses and routes back from eth0's alias."""
    ct, _ = netns
    first = in_netns(ct, network.setup)
    assert CT_ADDR not in ip("-n", ct, "-o", "addr", "show", "dev", "eth0")
    again = in_netns(ct, network.setup)
    assert again == first
    assert link_names(ct) == ["eth0", "lo", "tap0_runv"]
    assert tc_in(ct, "filter", "show", "dev", "eth0", "ingress").count("mirred") == 1
    in_netns(ct, network.teardown, again)
    assert_restored(ct)


def _hold_tap_and_setup_again() -> str:
    import fcntl

    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, network.TUNSETIFF, struct.pack("16sH", b"tap0_runv", network.IFF_TAP | network.IFF_NO_PI))
    try:
        network.setup()
    except network.NetworkError as e:
        return str(e)
    finally:
        os.close(fd)
    return "no error"


def test_a_namespace_already_joined_to_a_vm_is_refused(netns):
    """A second container in the same namespace cannot take the NICs a running VM has."""
    ct, _ = netns
    in_netns(ct, network.setup)
    assert "already joined" in in_netns(ct, _hold_tap_and_setup_again)
    assert link_names(ct) == ["eth0", "lo", "tap0_runv"]
    assert "Redirect to device tap0_runv" in tc_in(ct, "filter", "show", "dev", "eth0", "ingress")


def test_import_stays_light():
    """`runv state` and friends import runv modules freely: this one must not pull
    pyroute2, nor even the netlink code."""
    code = "import sys, runv.host.network; print([m for m in ('pyroute2', 'runv.host.rtnetlink') if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "[]\n"), r.stderr


def test_setup_and_teardown_load_no_pyroute2(netns):
    """The helper the shim forks for them, on the critical path of every start:
    a plain netlink socket, not pyroute2's 130 ms import."""
    ct, _ = netns
    code = ("import sys; from runv.host import network; network.teardown(network.setup()); "
            "print('pyroute2' in sys.modules)")
    r = subprocess.run(["ip", "netns", "exec", ct, sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert (r.returncode, r.stdout) == (0, "False\n"), r.stderr
    assert_restored(ct)


def test_refuses_the_host_namespace(netns, monkeypatch):
    """In the host's namespace (no network namespace in the config), setup must not
    touch a thing: it would hand the host's NICs to the VM. Checked inside ct, with
    the check told it is the host's, so that a broken guard cannot harm the host."""
    ct, _ = netns
    assert network.in_host_namespace()
    assert in_netns(ct, network.in_host_namespace) is False
    monkeypatch.setattr(network, "in_host_namespace", lambda: True)
    with pytest.raises(AssertionError, match="NetworkError: the container has no network namespace"):
        in_netns(ct, network.setup)
    assert link_names(ct) == ["eth0", "lo"]
    assert CT_ADDR in ip("-n", ct, "-o", "addr", "show", "dev", "eth0")


# ---------------------------------------------------------------- the namespace as it was

def _ip_json(ns: str, *args: str) -> list:
    return json.loads(ip("-n", ns, "-j", *args) or "[]")


def snapshot(ns: str) -> dict:
    """What `ip -j` and `tc -j` say of the namespace: its links, addresses, routes
    (every table, both families) and qdiscs, less what changes by itself (counters,
    DAD's progress). An IPv6 address given back goes through DAD (the fixture's
    was added `nodad`), and has its local route only once that is done: wait for it."""
    deadline = time.monotonic() + 60
    while ip("-n", ns, "-6", "addr", "show", "tentative").strip():
        assert time.monotonic() < deadline, ip("-n", ns, "-6", "addr", "show")
        time.sleep(0.1)
    links = [{k: v for k, v in link.items() if k not in ("stats", "stats64")} for link in _ip_json(ns, "link", "show")]
    addresses = {a["ifname"]: sorted((i["family"], i["local"], i["prefixlen"], i.get("scope"))
                                     for i in a.get("addr_info", []))
                 for a in _ip_json(ns, "addr", "show")}
    routes = {family: sorted(map(json.dumps, _ip_json(ns, family, "route", "show", "table", "all")))
              for family in ("-4", "-6")}
    qdiscs = json.loads(tc_in(ns, "-j", "qdisc", "show") or "[]")
    return {"links": links, "addresses": addresses, "routes": routes, "qdiscs": qdiscs}


@pytest.fixture
def netns_more(netns):
    """netns, with link routes and IPv6 routes on eth0 too."""
    ct, peer = netns
    ip("-n", ct, "route", "add", "10.50.0.0/16", "dev", "eth0")
    ip("-n", ct, "route", "add", "fd43::/64", "dev", "eth0")
    ip("-n", ct, "route", "add", "fd44::/64", "via", "fd42:7::1", "proto", "static")
    yield ct, peer


def test_setup_then_teardown_leaves_the_namespace_as_it_was(netns_more):
    """Links, addresses, routes and qdiscs, as ip and tc show them. (A link route
    comes back with scope link, as `ip route add` makes it: pyroute2 gave it back
    with scope global.)"""
    ct, _ = netns_more
    before = snapshot(ct)
    nics = in_netns(ct, network.setup)
    assert snapshot(ct) != before
    assert [str(r) for r in nics[0].routes] == [
        "10.50.0.0/16", "fd43::/64", "10.99.0.0/16 via 10.213.7.254", f"0.0.0.0/0 via {PEER_ADDR}",
        "fd44::/64 via fd42:7::1"]
    in_netns(ct, network.teardown, nics)
    assert snapshot(ct) == before


def test_teardown_from_the_alias_alone_leaves_the_namespace_as_it_was(netns_more):
    ct, _ = netns_more
    before = snapshot(ct)
    in_netns(ct, network.setup)
    in_netns(ct, network.teardown)
    assert snapshot(ct) == before


def _redirect_filters(ns: str, dev: str) -> list[tuple]:
    """(kind, protocol, pref, match, action) of each filter with an action on DEV's ingress."""
    found = []
    for f in json.loads(tc_in(ns, "-j", "filter", "show", "dev", dev, "ingress")):
        options = f.get("options", {})
        for action in options.get("actions", []):
            match = options.get("match", {})
            found.append((f["kind"], f["protocol"], f["pref"], (match.get("value"), match.get("mask"), match.get("off")),
                          (action["kind"], action["mirred_action"], action["direction"], action["to_dev"],
                           action["control_action"]["type"])))
    return found


def test_the_filters_are_u32_redirects_to_the_other_device(netns):
    ct, _ = netns
    in_netns(ct, network.setup)
    assert _redirect_filters(ct, "eth0") == [
        ("u32", "all", network.FILTER_PRIO, ("0", "0", 0), ("mirred", "redirect", "egress", "tap0_runv", "stolen"))]
    assert _redirect_filters(ct, "tap0_runv") == [
        ("u32", "all", network.FILTER_PRIO, ("0", "0", 0), ("mirred", "redirect", "egress", "eth0", "stolen"))]


# ---------------------------------------------------------------- rtnetlink itself

def _kernel_says() -> dict:
    """What the kernel answers runv.host.rtnetlink for eth0 of ct, and the errnos of
    requests it refuses."""
    from runv.host.rtnetlink import NetlinkError, Rtnl

    def code(fn, *args):
        try:
            fn(*args)
        except NetlinkError as e:
            return e.code
        return 0

    with Rtnl() as rt:
        index = rt.link_index("eth0")
        link = next(link for link in rt.links() if link.ifindex == index)
        return {
            "link": (link.name, link.mtu, link.kind, link.carrier, link.type),
            "addresses": sorted((a.address, a.prefixlen) for a in rt.addresses(index) if a.family in (2, 10)),
            "routes": {(r.dst, r.dst_len, r.gateway) for r in rt.routes(2) if r.table == 254 and r.oif == index},
            "missing": rt.link_index("eth9"),
            "again": code(rt.add_address, index, CT_ADDR, PREFIX),
            "no such link": code(rt.del_link, 99999),
            "unreachable": code(rt.add_route, "10.77.0.0", 16, index, "10.66.0.1"),
            "no such address": code(rt.del_address, index, "10.213.7.99", 24),
            "no ingress": code(rt.del_ingress, index),
        }


def test_rtnetlink_reads_what_ip_shows_and_errors_carry_the_errno(netns):
    import errno

    ct, _ = netns
    said = in_netns(ct, _kernel_says)
    assert said["link"] == ("eth0", 1400, "veth", True, 1)
    assert (CT_ADDR, PREFIX) in said["addresses"] and (CT_ADDR6, 64) in said["addresses"]
    assert said["routes"] == {(None, 0, PEER_ADDR), ("10.213.7.0", PREFIX, None), ("10.99.0.0", 16, "10.213.7.254")}
    assert said["missing"] is None
    assert said["again"] == errno.EEXIST
    assert said["no such link"] == errno.ENODEV
    assert said["unreachable"] == errno.ENETUNREACH
    assert said["no such address"] == errno.EADDRNOTAVAIL
    assert said["no ingress"] in (errno.ENOENT, errno.EINVAL)


# ---------------------------------------------------------------- through runv

def test_a_bind_mounted_network_namespace_is_joined(netns, runv, make_bundle):
    """CNI, Podman and `ip netns add` name the namespace by a bind mount of its
    nsfs file, not a /proc link: the container joins it and gets its eth0; when
    the container ends, eth0 is back with its addresses."""
    ct, _ = netns

    def edit(config):
        config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"]
        config["linux"]["namespaces"].append({"type": "network", "path": f"/run/netns/{ct}"})
    bundle = make_bundle(["sh", "-c", "ip -o -4 addr show dev eth0 || cat /proc/net/dev"], config_edit=edit)
    r = runv("run", "--bundle", bundle, "bindns")
    assert r.returncode == 0, r.stderr
    assert f"{CT_ADDR}/{PREFIX}" in r.stdout.decode()
    runv("delete", "bindns")
    assert link_names(ct) == ["eth0", "lo"]
    assert f"{CT_ADDR}/{PREFIX}" in ip("-n", ct, "-o", "addr", "show", "dev", "eth0")


@pytest.mark.parametrize("path", ["/proc/self/ns/uts", "/etc/hostname"])
def test_a_namespace_path_of_another_kind_is_refused(runv, make_bundle, path):
    from runv_testlib import one_line_error

    def edit(config):
        config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"]
        config["linux"]["namespaces"].append({"type": "network", "path": path})
    line = one_line_error(runv("run", "--bundle", make_bundle(["true"], config_edit=edit), "badns"))
    assert "not a network namespace" in line or "is not a namespace" in line, line


def test_a_container_vm_answers_on_its_tap(netns, runv, make_bundle):
    """A container in ct: its jailed QEMU gets the tap as an fd (no /dev/net/tun in
    its jail, no NET_ADMIN), and the guest answers the peer's ping with eth0's address."""
    import json

    ct, peer = netns

    def edit(config):
        config["linux"]["namespaces"] = [
            ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"] + [
            {"type": "network", "path": f"/run/netns/{ct}"}]
    r = runv("run", "-d", "--bundle", make_bundle(["sleep", "300"], config_edit=edit), "tap1", detached=True)
    assert r.returncode == 0, r.stderr.decode()
    try:
        with open(os.path.join(runv.root, "tap1", "state.json")) as f:
            qemu = json.load(f)["qemu_pid"]
        ping = subprocess.run(["ip", "netns", "exec", peer, "busybox", "ping", "-c", "1", "-W", "20", CT_ADDR],
                              capture_output=True, text=True, timeout=60)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        # NETIF gave the guest's NIC (restored with the template's MAC and MTU) the veth's
        mac = subprocess.run(["ip", "-n", ct, "-j", "link", "show", "eth0"], capture_output=True,
                             text=True, check=True).stdout
        r = runv("exec", "tap1", "cat", "/sys/class/net/eth0/mtu", "/sys/class/net/eth0/address", check=True)
        assert r.stdout.decode().split() == ["1400", json.loads(mac)[0]["address"]]
        fds = [os.readlink(f"/proc/{qemu}/fd/{fd}") for fd in os.listdir(f"/proc/{qemu}/fd")]
        assert "/dev/net/tun" in fds  # the shim's fd on tap0_runv
        assert not os.path.exists(f"/proc/{qemu}/root/dev/net")
        with open(f"/proc/{qemu}/status") as f:
            cap_eff = int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)
        assert not cap_eff & (1 << 12)  # CAP_NET_ADMIN
        runv("kill", "tap1", "KILL", check=True)
        deadline = time.monotonic() + 60
        while runv.state("tap1")["status"] != "stopped":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        runv("delete", "tap1", check=True)
    finally:
        runv("delete", "--force", "tap1")
    assert link_names(ct) == ["eth0", "lo"]  # the tap went with the VM


@pytest.mark.parametrize("how", ["delete --force", "shim killed, then delete"])
def test_a_dead_shims_network_is_undone_from_its_state(netns, runv, make_bundle, how):
    """A shim that never ran its teardown (SIGKILL: `delete --force`, or a crash)
    leaves its tap and eth0's redirect in a namespace that outlives it: `delete`
    undoes them from state.json alone, and eth0 gets its addresses back."""
    import json
    import signal

    from runv.host import proc

    ct, _ = netns

    def edit(config):
        config["linux"]["namespaces"] = [
            ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"] + [
            {"type": "network", "path": f"/run/netns/{ct}"}]
    r = runv("run", "-d", "--bundle", make_bundle(["sleep", "300"], config_edit=edit), "deadshim", detached=True)
    assert r.returncode == 0, r.stderr.decode()
    try:
        with open(os.path.join(runv.root, "deadshim", "state.json")) as f:
            state = json.load(f)
        assert state["taps"] == {"tap0_runv": "eth0"} and state["netns_path"] == f"/run/netns/{ct}"
        assert "tap0_runv" in link_names(ct)
        if how == "delete --force":
            runv("delete", "--force", "deadshim", check=True)
        else:
            os.kill(state["pid"], signal.SIGKILL)
            assert proc.wait_gone(state["pid"], state["pid_start"], 10)
            assert "tap0_runv" in link_names(ct)  # nobody took it down
            runv("delete", "deadshim", check=True)
        assert_restored(ct)
    finally:
        runv("delete", "--force", "deadshim")
