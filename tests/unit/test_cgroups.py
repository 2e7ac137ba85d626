"""cgroupsPath forms."""
from runv.cgroups import cgroup_path


def test_cgroup_paths():
    assert cgroup_path({}, "c1") == "/runv/c1"
    assert cgroup_path({"linux": {"cgroupsPath": "/docker/abc"}}, "c1") == "/docker/abc"
    assert cgroup_path({"linux": {"cgroupsPath": "rel/x"}}, "c1") == "/runv/rel/x"
    assert cgroup_path({"linux": {"cgroupsPath": "system.slice:docker:abc"}}, "c1") == \
        "/system.slice/docker-abc.scope"


# ---- knobs, written into a fake cgroup directory ----

import os  # noqa: E402

import pytest  # noqa: E402

from runv import cgroups  # noqa: E402
from runv.cgroups import CgroupError, VM_OVERHEAD  # noqa: E402


def knobs(tmp_path, *names):
    for n in names:
        (tmp_path / n).write_text("")
    return str(tmp_path)


def read(d, name):
    return open(os.path.join(d, name)).read()


def test_relative_and_bad_paths():
    assert cgroup_path({"linux": {"cgroupsPath": "testdir/cgrouptest/container"}}, "c") == \
        "/runv/testdir/cgrouptest/container"
    with pytest.raises(CgroupError, match="must not contain"):
        cgroup_path({"linux": {"cgroupsPath": "/a/../../etc"}}, "c")


def test_device_rules():
    assert cgroups.device_rule({"allow": False, "access": "rwm"}) == "a"
    assert cgroups.device_rule({"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"}) == \
        "c 10:229 rwm"
    assert cgroups.device_rule({"allow": True, "type": "b", "major": 8, "access": "r"}) == "b 8:* r"
    assert cgroups.device_rule({"type": "c", "major": -1, "minor": -1}) == "c *:* rwm"


def test_host_devices_are_the_vms_alone(tmp_path):
    """The container's device rules belong to the guest: the host cgroup of the
    shim and QEMU denies all but the few devices they open, whatever the config."""
    writes = []
    d = knobs(tmp_path, "devices.allow", "devices.deny")
    real_write = cgroups._write

    def spy(directory, name, value, required=False):
        writes.append((name, value))
        return real_write(directory, name, value, required)

    cgroups._write, saved = spy, cgroups._write
    try:
        cgroups._apply(d, {"devices"}, {"devices": [
            {"allow": True, "type": "a", "access": "rwm"},
            {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "rw"}]})
    finally:
        cgroups._write = saved
    assert writes == [("devices.deny", "a")] + [("devices.allow", rule) for rule in cgroups.VM_DEVICES]
    assert "c 10:232 rwm" in cgroups.VM_DEVICES  # KVM, for QEMU
    assert not any(rule.startswith("b ") for rule in cgroups.VM_DEVICES)  # no disk, ever


def test_memory_gets_the_vms_overhead(tmp_path):
    d = knobs(tmp_path, "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
              "memory.swappiness", "memory.oom_control", "memory.kmem.tcp.limit_in_bytes")
    cgroups._memory_v1(d, {"limit": 50 * 2**20, "swap": 60 * 2**20, "reservation": 40 * 2**20,
                           "kernel": 1, "kernelTCP": 30 * 2**20, "swappiness": 10, "disableOOMKiller": True})
    assert read(d, "memory.limit_in_bytes") == str(50 * 2**20 + VM_OVERHEAD)
    assert read(d, "memory.memsw.limit_in_bytes") == str(60 * 2**20 + VM_OVERHEAD)
    assert read(d, "memory.soft_limit_in_bytes") == str(40 * 2**20)
    assert read(d, "memory.kmem.tcp.limit_in_bytes") == str(30 * 2**20)
    assert (read(d, "memory.swappiness"), read(d, "memory.oom_control")) == ("10", "1")
    cgroups._memory_v1(d, {"limit": -1})
    assert read(d, "memory.limit_in_bytes") == "-1"


def test_pids_floor_and_cpu(tmp_path):
    d = knobs(tmp_path, "pids.max", "cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpuset.cpus",
              "cpuset.mems")
    cgroups._apply(d, {"pids", "cpu", "cpuset"}, {"pids": {"limit": 1000},
                                                  "cpu": {"shares": 1024, "quota": 50000, "period": 100000,
                                                          "cpus": "0", "mems": "0"}})
    assert read(d, "pids.max") == "1000"
    assert [read(d, k) for k in ("cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpuset.cpus")] == \
        ["1024", "100000", "50000", "0"]
    cgroups._apply(d, {"pids"}, {"pids": {"limit": 5}})
    assert read(d, "pids.max") == str(cgroups.MIN_PIDS)  # QEMU's threads must fit
    cgroups._apply(d, {"pids"}, {"pids": {"limit": -1}})
    assert read(d, "pids.max") == "max"


def test_values_no_kernel_takes_are_refused(tmp_path):
    with pytest.raises(CgroupError, match="swappiness"):
        cgroups.check({"memory": {"swappiness": 101}})
    with pytest.raises(CgroupError, match="hugepage size"):
        cgroups.check({"hugepageLimits": [{"pageSize": "3 MB", "limit": 1}]})
    d = knobs(tmp_path, "hugetlb.2MB.limit_in_bytes")
    cgroups._apply(d, {"hugetlb"}, {"hugepageLimits": [{"pageSize": "2MB", "limit": 4096}]})
    assert read(d, "hugetlb.2MB.limit_in_bytes") == "4096"
    with pytest.raises(CgroupError, match="no hugetlb.3MB.limit_in_bytes"):
        cgroups._apply(d, {"hugetlb"}, {"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]})
    with pytest.raises(CgroupError, match="invalid device cgroup rule"):
        cgroups.check({"devices": [{"allow": True, "type": "x"}]})


def test_page_sizes_come_from_the_kernel_not_from_what_is_mounted(tmp_path):
    for kb in (2048, 1048576, 64):
        (tmp_path / f"hugepages-{kb}kB").mkdir()
    assert cgroups.host_page_sizes(str(tmp_path)) == ["1GB", "2MB", "64KB"]
    assert cgroups.host_page_sizes(str(tmp_path / "missing")) == []


def test_a_page_size_the_host_lacks_is_refused_without_hugetlb_mounted():
    sizes = cgroups.host_page_sizes()
    if sizes:
        cgroups.check({"hugepageLimits": [{"pageSize": sizes[0], "limit": 1 << 21}]})
    with pytest.raises(CgroupError, match="hugetlb.3MB"):
        cgroups.check({"hugepageLimits": [{"pageSize": "3MB", "limit": 1 << 20}]})
