"""Fault injection: the integration fixtures (the real binary, real VMs), a
network namespace that stands for docker's or CNI's, and the harness."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from integration.conftest import make_bundle, rootfs_template, runv  # noqa: E402,F401
from runv_testlib import leftovers, netns_snapshot  # noqa: E402

CT_ADDR, PEER_ADDR, PREFIX = "10.214.9.2", "10.214.9.1", 24


def make_netns(tag: str) -> tuple[str, str]:
    """A namespace as a CNI plugin leaves it: eth0 (a veth) with an address, a
    route and a default route, its peer in a namespace of its own."""
    ct, peer = f"runvf-ct{tag}", f"runvf-peer{tag}"

    def ip(*args: str) -> None:
        r = subprocess.run(["ip", *args], capture_output=True, text=True)
        assert r.returncode == 0, f"ip {' '.join(args)}: {r.stderr}"

    ip("netns", "add", ct)
    ip("netns", "add", peer)
    ip("-n", peer, "link", "add", "veth-peer", "type", "veth", "peer", "name", "eth0", "netns", ct)
    ip("-n", peer, "addr", "add", f"{PEER_ADDR}/{PREFIX}", "dev", "veth-peer")
    ip("-n", peer, "link", "set", "veth-peer", "up")
    ip("-n", ct, "link", "set", "lo", "up")
    ip("-n", ct, "link", "set", "eth0", "up")
    ip("-n", ct, "addr", "add", f"{CT_ADDR}/{PREFIX}", "dev", "eth0")
    ip("-n", ct, "route", "add", "default", "via", PEER_ADDR)
    return ct, peer


def remove_netns(*names: str) -> None:
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def join_netns(ns: str):
    """A config_edit for make_bundle: the container's network is the named namespace."""
    def edit(config):
        config["linux"]["namespaces"] = [
            n for n in config["linux"]["namespaces"] if n["type"] != "network"] + [
            {"type": "network", "path": f"/run/netns/{ns}"}]
    return edit


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """No runv process or state under any root the tests used. What each test
    made on the host is checked by the test itself (runv_testlib.leaks, by its
    container ids: other VMs may run on this host meanwhile)."""
    yield
    assert leftovers() == []


@pytest.fixture
def netns():
    """(name, its snapshot before the test)."""
    ct, peer = make_netns(f"{os.getpid() % 10000}")
    try:
        yield ct, netns_snapshot(ct)
    finally:
        remove_netns(ct, peer)
