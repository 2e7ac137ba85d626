"""`runv update`: a running container's limits change live, in its guest
cgroup (read back from inside) and in the host cgroup that holds its VM; bad
values change nothing. Each test boots real VMs through the real runv binary."""
from __future__ import annotations

import json
import os

import pytest
from runv_testlib import one_line_error

from runv.oci import resources

MiB = 2**20
VM_OVERHEAD = 256 * MiB  # runv.host.cgroups.VM_OVERHEAD


def start(runv, make_bundle, cid: str, resources: dict | None) -> None:
    def edit(config):
        config["linux"]["namespaces"].append({"type": "cgroup"})
        if resources is not None:
            config["linux"]["resources"] = resources
        else:
            config["linux"].pop("resources", None)
    r = runv("run", "-d", "--bundle", make_bundle(["sleep", "600"], config_edit=edit), cid, detached=True)
    assert r.returncode == 0, r.stderr


def limits(runv, cid: str) -> list[str]:
    """memory.max, pids.max, cpu.weight and cpu.max as the container sees them."""
    r = runv("exec", cid, "cat", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max",
             "/sys/fs/cgroup/cpu.weight", "/sys/fs/cgroup/cpu.max")
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().splitlines()


def host_knob(runv, cid: str, knob: str) -> str:
    """A knob of the host cgroup that holds the container's VM (v1 or v2)."""
    with open(os.path.join(runv.root, cid, "state.json")) as f:
        dirs = json.load(f)["cgroup"].split(":")
    knob = V2_KNOBS.get(knob, knob) if any(os.path.exists(os.path.join(d, "cgroup.controllers")) for d in dirs) else knob
    d = next(d for d in dirs if os.path.exists(os.path.join(d, knob)))
    with open(os.path.join(d, knob)) as f:
        return f.read().strip()


V2_KNOBS = {"memory.limit_in_bytes": "memory.max"}


def floor(runv, cid: str) -> int:
    """The least memory limit the host cgroup takes: what the guest has been given, less its own 32 MiB."""
    with open(os.path.join(runv.root, cid, "state.json")) as f:
        return (json.load(f)["guest_memory_mb"] - 32) * MiB


def test_update_changes_memory_pids_and_cpu_live(runv, make_bundle):
    start(runv, make_bundle, "up1", {"memory": {"limit": 128 * MiB}, "pids": {"limit": 50},
                                     "cpu": {"shares": 1024}})
    try:
        assert limits(runv, "up1") == [str(128 * MiB), "50", "39", "max 100000"]
        r = runv("update", "--memory", "96m", "--pids-limit", "30", "--cpu-shares", "512",
                 "--cpu-quota", "50000", "--cpu-period", "100000", "up1")
        assert r.returncode == 0, r.stderr
        assert limits(runv, "up1") == [str(96 * MiB), "30", "20", "50000 100000"]
        # The host never holds QEMU below the memory the guest was given (128 MiB and
        # the guest's own). Growing goes through, with the VM's overhead on top.
        assert host_knob(runv, "up1", "memory.limit_in_bytes") == str(floor(runv, "up1") + VM_OVERHEAD)
        assert floor(runv, "up1") >= 128 * MiB
        assert host_knob(runv, "up1", "pids.max") == "64"  # QEMU's threads must fit
        r = runv("update", "-r", "-", "up1", input=json.dumps(
            {"memory": {"limit": 300 * MiB}, "pids": {"limit": -1}, "cpu": {"quota": -1},
             "devices": [{"allow": False, "access": "rwm"}]}).encode())
        assert r.returncode == 0, r.stderr
        # 300 MiB is more than this VM's RAM (twice the 160 MiB it booted with) can give
        # the container beside the guest's own: its guest cgroup is capped below what the
        # guest has, so that it is OOM-killed there rather than starve the whole guest.
        ram = 2 * (128 + resources.GUEST_OVERHEAD_MB)
        cap = (ram - resources.memmap_mb(ram) - resources.GUEST_OVERHEAD_MB) * MiB
        assert limits(runv, "up1") == [str(cap), "max", "20", "max 100000"]
        assert host_knob(runv, "up1", "memory.limit_in_bytes") == str(300 * MiB + VM_OVERHEAD)
        assert host_knob(runv, "up1", "pids.max") == "max"
        stats = json.loads(runv("events", "--stats", "up1", check=True).stdout)["data"]
        assert stats["memory"]["usage"]["limit"] == 300 * MiB
        assert runv.state("up1")["status"] == "running"
    finally:
        runv("delete", "--force", "up1")


def test_bad_values_change_nothing(runv, make_bundle, tmp_path):
    start(runv, make_bundle, "up2", {"memory": {"limit": 128 * MiB}, "pids": {"limit": 50}})
    try:
        before = limits(runv, "up2")
        bad_file = tmp_path / "res.json"
        bad_file.write_text(json.dumps({"memory": {"limit": "1g"}}))
        for args in (["--memory", "lots"], ["--memory", "1e9"], ["--cpu-shares", "-5"],
                     ["--pids-limit", "ten"], ["--cpuset-cpus", "0\n1"], ["--blkio-weight", "5000"],
                     ["--l3-cache-schema", "L3:0=f"], ["--mem-bw-schema", "MB:0=20"],
                     ["--memory", "200m", "--memory-swap", "100m"],
                     ["--memory-swap", "64m"],  # below the current memory limit
                     ["-r", str(bad_file)], ["-r", str(tmp_path / "missing.json")],
                     ["--cpuset-cpus", "97"],  # no such host CPU: the host cgroup refuses it
                     []):
            one_line_error(runv("update", *args, "up2"))
            assert runv.state("up2")["status"] == "running"
        # The shim trusts no client: what `runv update` checks, it checks again.
        from runv.errors import RunvError
        from runv.sandbox import client
        for res in ({"memory": {"limit": "1g"}}, "x", {"cpu": {"cpus": "0\n1"}}, {"pids": {"limit": 2**64}},
                    {"memory": {"limit": 100 * MiB, "swap": 50 * MiB}}):
            with pytest.raises(RunvError):
                client.call(os.path.join(runv.root, "up2"), "update", resources=res)
        assert runv.state("up2")["status"] == "running"
        assert limits(runv, "up2") == before
        assert host_knob(runv, "up2", "memory.limit_in_bytes") == str(128 * MiB + VM_OVERHEAD)  # as created
        one_line_error(runv("update", "--memory", "64m", "nosuch"))
    finally:
        runv("delete", "--force", "up2")


def test_limits_come_to_a_container_started_without_any_and_to_a_paused_one(runv, make_bundle):
    start(runv, make_bundle, "up3", None)
    try:
        # no limit: the guest's memory less its own (runv.oci.resources.container_memory_max)
        assert limits(runv, "up3")[:2] == [str((128 - 32) * MiB), "max"]
        assert runv("update", "--memory", "64m", "--pids-limit", "10", "up3").returncode == 0
        assert limits(runv, "up3")[:2] == [str(64 * MiB), "10"]
        assert runv("pause", "up3").returncode == 0
        r = runv("update", "--pids-limit", "12", "up3")
        assert r.returncode == 0, r.stderr
        assert runv("resume", "up3").returncode == 0
        assert limits(runv, "up3")[:2] == [str(64 * MiB), "12"]
        assert runv("kill", "up3", "KILL").returncode == 0
    finally:
        runv("delete", "--force", "up3")
    one_line_error(runv("update", "--memory", "64m", "up3"))


def test_memory_grows_past_what_the_vm_booted_with(runv, make_bundle):
    """A container started at 128 MiB and updated to 512 MiB fills 300 MiB of
    tmpfs without being killed: the balloon gave the guest the memory."""
    def edit(config):
        config["annotations"] = {"io.github.runv.memory.max": str(640 * MiB)}
        config["linux"]["resources"] = {"memory": {"limit": 128 * MiB}}
        config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                 "options": ["size=400m"]})
    r = runv("run", "-d", "--bundle", make_bundle(["sleep", "600"], config_edit=edit), "up4", detached=True)
    assert r.returncode == 0, r.stderr
    try:
        # The balloon inflates on the guest driver's own time, right after boot.
        r = runv("exec", "up4", "sh", "-c",
                 "until [ $(awk '/MemTotal/ {print $2}' /proc/meminfo) -lt 200000 ]; do sleep 0.1; done",
                 timeout=600)
        assert r.returncode == 0, r.stderr
        r = runv("update", "--memory", "512m", "up4")
        assert r.returncode == 0, r.stderr
        # The guest's driver deflates the balloon on its own time: wait for it (no deadline but the test's).
        r = runv("exec", "up4", "sh", "-c",
                 "until [ $(awk '/MemTotal/ {print $2}' /proc/meminfo) -gt 500000 ]; do sleep 0.1; done; "
                 "dd if=/dev/zero of=/tmp/f bs=1M count=300 2>/dev/null && du -m /tmp/f", timeout=600)
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().split()[0] == "300"
        assert runv.state("up4")["status"] == "running"
        # and back down: the guest gives the pages back once the file is gone
        assert runv("exec", "up4", "rm", "/tmp/f").returncode == 0
        r = runv("update", "--memory", "128m", "up4")
        assert r.returncode == 0, r.stderr
        r = runv("exec", "up4", "sh", "-c",
                 "until [ $(awk '/MemTotal/ {print $2}' /proc/meminfo) -lt 250000 ]; do sleep 0.1; done")
        assert r.returncode == 0, r.stderr
    finally:
        runv("delete", "--force", "up4")
