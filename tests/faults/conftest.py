"""Fault injection: the integration fixtures (the real binary, real VMs), a
network namespace that stands for docker's or CNI's, and the harness."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import join_netns, make_netns, remove_netns  # noqa: E402,F401
from integration.conftest import make_bundle, rootfs_template, runv  # noqa: E402,F401
from runv_testlib import leftovers, netns_snapshot  # noqa: E402


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
