"""Commands racing on one container id: each ends within its timeout, says
something runc-like (no traceback), and what is left is consistent and then
removed by one `delete --force`."""
from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from runv_testlib import host_snapshot, leaks

TIMEOUT = 120.0


def test_two_creates_of_one_id(runv, make_bundle):
    before = host_snapshot()
    bundle = make_bundle(["sleep", "300"])
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: runv("create", "--bundle", bundle, "race1", detached=True,
                                               timeout=TIMEOUT), range(2)))
    codes = sorted(r.returncode for r in results)
    assert codes[0] == 0 and codes[1] != 0, [r.stderr for r in results]
    loser = next(r for r in results if r.returncode != 0).stderr.decode()
    assert "Traceback" not in loser and loser.startswith("runv: ") and "exists" in loser, loser
    assert runv.state("race1")["status"] == "created"  # the winner, untouched by the loser
    runv("delete", "--force", "race1", check=True)
    assert leaks(before, markers=["race1", runv.root]) == []


MIX = ["kill", "delete --force", "state", "exec", "start", "kill KILL", "list"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_commands_racing_on_one_container(seed, runv, make_bundle):
    before = host_snapshot()
    rng = random.Random(seed)
    runv("create", "--bundle", make_bundle(["sleep", "300"]), "race2", check=True, detached=True)
    if seed % 2:
        runv("start", "race2", check=True)
    ops = [rng.choice(MIX) for _ in range(10)]

    def run(op: str):
        argv = {"kill": ["kill", "race2"], "kill KILL": ["kill", "race2", "KILL"],
                "delete --force": ["delete", "--force", "race2"], "state": ["state", "race2"],
                "exec": ["exec", "race2", "true"], "start": ["start", "race2"], "list": ["list"]}[op]
        return op, runv(*argv, timeout=TIMEOUT, detached=True)

    with ThreadPoolExecutor(len(ops)) as pool:
        results = list(pool.map(run, ops))
    for op, r in results:
        err = r.stderr.decode()
        assert "Traceback" not in err, (op, err)
        if r.returncode != 0:
            assert err.startswith("runv: ") and len(err.strip().splitlines()) == 1, (op, err)
    # Consistent afterwards: state and list agree, and delete --force ends it.
    r = runv("state", "race2")
    listed = {c["id"]: c["status"]
              for c in json.loads(runv("list", "--format", "json", check=True).stdout or b"[]") or []}
    if r.returncode == 0:
        assert listed.get("race2") == json.loads(r.stdout)["status"]
    else:
        assert "race2" not in listed and b"does not exist" in r.stderr
    r = runv("delete", "--force", "race2")
    assert r.returncode == 0 or b"does not exist" in r.stderr, r.stderr
    assert leaks(before, markers=["race2", runv.root]) == [], ops
