"""SIGKILL at any phase: the `runv` command, the shim or QEMU, killed where
runv/faultpoint.py stops it. Afterwards `state` tells the truth, `list` agrees,
`delete --force` removes everything, and a pre-existing network namespace is
back as it was found (eth0's address and routes, no tap, no qdisc)."""
from __future__ import annotations

import json

import pytest
from harness import COMMAND, VICTIMS, inject, join_netns
from integration.conftest import RUNV
from runv_testlib import host_snapshot, leaks

CASES = [(phase, victim) for phase, victims in VICTIMS.items() for victim in victims]


def check_truth(runv, cid: str, shim_killed: bool) -> None:
    """`state` and `list` agree, and say stopped if the shim is gone."""
    r = runv("state", cid, timeout=30)
    listed = json.loads(runv("list", "--format", "json", check=True, timeout=30).stdout or b"[]") or []
    ids = {c["id"]: c["status"] for c in listed}
    if r.returncode != 0:
        assert b"does not exist" in r.stderr, r.stderr
        assert cid not in ids
        return
    status = json.loads(r.stdout)["status"]
    assert ids.get(cid) == status
    if shim_killed:
        assert status == "stopped", status
    else:
        assert status in ("creating", "created", "running", "stopped"), status


@pytest.mark.parametrize("phase,victim", CASES)
def test_sigkill_at(phase, victim, runv, make_bundle, netns):
    ns, ns_before = netns
    before = host_snapshot()
    cid = f"flt-{phase.replace('.', '-')}-{victim}"
    bundle = make_bundle(["sleep", "300"], config_edit=join_netns(ns))
    command = COMMAND.get(phase, "create")
    if command != "create":
        runv("create", "--bundle", bundle, cid, check=True, detached=True)
        if command != "start":
            runv("start", cid, check=True)
    argv = {"create": ["create", "--bundle", bundle, cid], "start": ["start", cid],
            "exec": ["exec", cid, "sleep", "200"], "delete": ["delete", "--force", cid]}[command]
    try:
        got = inject(RUNV, runv.root, runv.env, argv, cid, phase, victim)
        shim_killed = victim in ("shim", "qemu") or command == "delete"
        check_truth(runv, cid, shim_killed)
    finally:
        r = runv("delete", "--force", cid, timeout=60)
    assert r.returncode == 0 or b"does not exist" in r.stderr, r.stderr
    assert runv("state", cid).returncode != 0
    found = leaks(before, {ns: ns_before}, [cid, runv.root])
    assert found == [], (got, found)
