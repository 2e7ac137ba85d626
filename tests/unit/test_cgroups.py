"""cgroupsPath forms."""
from runv.host.cgroups import cgroup_path


def test_cgroup_paths():
    assert cgroup_path({}, "c1") == "/runv/c1"
    assert cgroup_path({"linux": {"cgroupsPath": "/docker/abc"}}, "c1") == "/docker/abc"
    assert cgroup_path({"linux": {"cgroupsPath": "rel/x"}}, "c1") == "/runv/rel/x"
    assert cgroup_path({"linux": {"cgroupsPath": "system.slice:docker:abc"}}, "c1") == \
        "/system.slice/docker-abc.scope"


# ---- knobs, written into a fake cgroup directory ----

import os  # noqa: E402

import pytest  # noqa: E402

from runv.host import cgroups  # noqa: E402
from runv.host.cgroups import VM_OVERHEAD, CgroupError  # noqa: E402


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
# ---- untrusted input: cgroupsPath, resource values, unified keys ----

@pytest.mark.parametrize("path", ["/a/../../etc", "../x", "a/../../b", "..:x:y", "/..", "/", ".", "/./",
                                  "x\0y", "a\nb", "a" * 256, 5, ["a"], {"a": 1}, "/runv", "./"])
def test_cgroups_path_must_name_a_cgroup_below_the_root(path):
    with pytest.raises(CgroupError):
        cgroup_path({"linux": {"cgroupsPath": path}}, "c")


def test_cgroups_path_is_normalised():
    assert cgroup_path({"linux": {"cgroupsPath": "//a/./b/"}}, "c") == "/a/b"
    assert cgroup_path({"linux": {"cgroupsPath": ""}}, "c") == "/runv/c"
    assert cgroup_path({"linux": None}, "c") == "/runv/c"
    assert cgroup_path({"linux": {"cgroupsPath": "a..b/..c"}}, "c") == "/runv/a..b/..c"


@pytest.mark.parametrize("res", [
    "x", [], {"memory": "x"}, {"memory": {"swappiness": "x"}}, {"memory": {"limit": "1g"}},
    {"memory": {"limit": 2**63}}, {"memory": {"limit": 1.5}}, {"memory": {"limit": True}},
    {"memory": {"disableOOMKiller": "yes"}}, {"cpu": {"shares": -1}}, {"cpu": {"period": -5}},
    {"cpu": {"quota": 2**63}}, {"cpu": {"cpus": "0\n1"}}, {"cpu": {"mems": 0}}, {"pids": {"limit": "x"}},
    {"pids": {}}, {"pids": {"limit": 10**30}}, {"hugepageLimits": [{"pageSize": "2MB", "limit": -1}]},
    {"hugepageLimits": [{"pageSize": "../2MB", "limit": 1}]}, {"hugepageLimits": [None]},
    {"hugepageLimits": {"pageSize": "2MB"}}, {"network": {"classID": 2**32}},
    {"network": {"priorities": [{"name": "eth0 1\nlo", "priority": 1}]}},
    {"network": {"priorities": [{"name": "eth0", "priority": -1}]}}, {"blockIO": {"weight": 5}},
    {"blockIO": {"weightDevice": [{"major": -1, "minor": 0, "weight": 100}]}},
    {"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}},
    {"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": "1m"}]}},
    {"devices": [{"allow": "yes"}]}, {"devices": [None]}, {"devices": [{"allow": True, "major": "x"}]},
    {"devices": [{"allow": True, "access": 7}]},
])
def test_malformed_resource_values_are_one_cgroup_error(res):
    with pytest.raises(CgroupError):
        cgroups.check(res)


@pytest.mark.parametrize("key", ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads", "cgroup.kill",
                                 "cgroup.freeze", "cgroup.max.depth", "../x", "memory/../../cgroup.procs",
                                 "memory..max", "x/memory.max", "memory", ".memory.max", "memory.max\n",
                                 "Memory.max", ""])
def test_unified_takes_only_controller_knobs(key):
    with pytest.raises(CgroupError):
        cgroups.check({"unified": {key: "1"}})


def test_unified_values_are_strings():
    cgroups.check({"unified": {"memory.high": "max", "io.bfq.weight": "100", "hugetlb.2MB.max": "0"}})
    for value in (5, None, ["max"], "a\0b"):
        with pytest.raises(CgroupError):
            cgroups.check({"unified": {"memory.high": value}})


def test_unified_needs_an_enabled_controller(tmp_path):
    d = knobs(tmp_path, "memory.high", "io.max", "cgroup.procs")
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    cgroups._apply_v2(d, {"unified": {"memory.high": "1000000"}})
    assert read(d, "memory.high") == "1000000"
    with pytest.raises(CgroupError, match="controller 'io' is not available"):
        cgroups._apply_v2(d, {"unified": {"io.max": "8:0 rbps=1"}})
    with pytest.raises(CgroupError):
        cgroups._apply_v2(d, {"unified": {"cgroup.procs": "1"}})
    assert read(d, "cgroup.procs") == ""


def test_a_cgroup_with_processes_is_refused(tmp_path):
    cgroups.refuse_unfit(str(tmp_path / "missing"))  # to be made: fine
    (tmp_path / "cgroup.procs").write_text("")
    cgroups.refuse_unfit(str(tmp_path))  # empty: fine
    (tmp_path / "child").mkdir()
    (tmp_path / "child" / "cgroup.procs").write_text("123\n456\n")
    with pytest.raises(CgroupError, match=r"not empty: 2 process\(es\)"):
        cgroups.refuse_unfit(str(tmp_path))


def test_a_frozen_cgroup_is_refused(tmp_path):
    (tmp_path / "freezer.state").write_text("FROZEN\n")
    with pytest.raises(CgroupError, match="frozen"):
        cgroups.refuse_unfit(str(tmp_path))


def test_destroy_removes_only_what_was_made(tmp_path):
    (tmp_path / "shared").mkdir()
    made: list[str] = []
    leaf = cgroups._makedirs(str(tmp_path), "shared/mine/c", False, made)
    assert made == [str(tmp_path / "shared/mine"), leaf]
    cgroups.Cgroup([leaf], made).destroy(wait=0)
    assert (tmp_path / "shared").is_dir() and not (tmp_path / "shared/mine").exists()
    # joining a cgroup that was there: nothing made, nothing removed
    (tmp_path / "shared/joined").mkdir()
    made = []
    leaf = cgroups._makedirs(str(tmp_path), "shared/joined", False, made)
    assert made == []
    cgroups.Cgroup([leaf], made).destroy(wait=0)
    assert (tmp_path / "shared/joined").is_dir()


def test_a_busy_parent_is_left_without_waiting(tmp_path):
    made: list[str] = []
    leaf = cgroups._makedirs(str(tmp_path), "p/c", False, made)
    (tmp_path / "p" / "other").mkdir()  # another container's cgroup under the same parent
    cgroups.Cgroup([leaf], made).destroy(wait=30)
    assert not os.path.exists(leaf) and (tmp_path / "p").is_dir()


def test_a_zero_blkio_weight_means_none_as_docker_sends_it():
    cgroups.check({"blockIO": {"weight": 0, "leafWeight": 0,
                               "weightDevice": [{"major": 8, "minor": 0, "weight": 0}]}})
