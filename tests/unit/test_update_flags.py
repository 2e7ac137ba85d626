"""`runv update`: runc's flags into linux.resources, the merge with the
container's current resources, and the records and host knobs they become."""
import pytest

from runv.agent import protocol as P
from runv.agent.records import update_payload
from runv.commands.update import from_flags, parse_value
from runv.errors import RunvError
from runv.host import cgroups
from runv.oci.resources import merge_update

MiB = 2**20


def test_flags_become_resources_as_runc_parses_them():
    assert from_flags(dict(memory="300m", memory_swap="-1", cpu_share="512", cpu_quota="-1",
                            cpu_period="100000", cpuset_cpus="0-1", pids_limit="20", blkio_weight="500",
                            kernel_memory="10m")) == {
        "memory": {"limit": 300 * MiB, "swap": -1},
        "cpu": {"shares": 512, "quota": -1, "period": 100000, "cpus": "0-1"},
        "pids": {"limit": 20}, "blockIO": {"weight": 500}}
    assert parse_value("memory", "1.5g", "size") == 3 * 2**29
    assert parse_value("memory", "64MiB", "size") == 64 * MiB
    assert parse_value("memory", "4096", "size") == 4096
    assert from_flags(dict(kernel_memory="10m")) == {}  # deprecated: accepted and ignored, as in runc


@pytest.mark.parametrize("kw", [{"memory": "lots"}, {"memory": "1e9"}, {"memory": "-2"}, {"cpu_share": "-5"},
                                {"cpu_period": "1.5"}, {"pids_limit": "ten"}, {"memory": "99999999p"},
                                {"l3_cache_schema": "L3:0=f"}, {"mem_bw_schema": "MB:0=20"}, {},
                                {"kernel_memory": "ten"}])
def test_bad_flags_are_one_error(kw):
    with pytest.raises(RunvError):
        from_flags(dict(**kw))


def test_merge_changes_only_what_is_given():
    current = {"memory": {"limit": 128 * MiB, "swap": 128 * MiB}, "pids": {"limit": 50},
               "devices": [{"allow": False, "access": "rwm"}], "cpu": {"shares": 1024}}
    new = merge_update(current, {"memory": {"limit": 256 * MiB}, "cpu": {"quota": 50000},
                                 "devices": [], "hugepageLimits": [{"pageSize": "2MB", "limit": 0}]})
    assert new == {"memory": {"limit": 256 * MiB, "swap": 256 * MiB}, "pids": {"limit": 50},
                   "devices": [{"allow": False, "access": "rwm"}], "cpu": {"shares": 1024, "quota": 50000}}
    assert current["memory"]["limit"] == 128 * MiB  # not changed in place
    # a swap limit apart from the memory limit stays apart
    assert merge_update({"memory": {"limit": 1, "swap": 2}}, {"memory": {"limit": 3}})["memory"] == \
        {"limit": 3, "swap": 2}


def test_update_records_carry_the_guest_knobs():
    recs = P.decode_records(update_payload({"memory": {"limit": -1}, "pids": {"limit": 7},
                                            "cpu": {"quota": -1, "shares": 512}}))
    assert {tuple(v.split(b"\0")[:2]) for tag, v in recs if tag == P.Tag.CGROUP} == {
        (b"memory.max", b"max"), (b"pids.max", b"7"), (b"cpu.weight", b"20"), (b"cpu.max", b"max 100000")}


def test_host_memory_never_goes_below_the_vms_ram(tmp_path, monkeypatch):
    monkeypatch.setattr(cgroups, "_hierarchies", lambda: {"memory": str(tmp_path), "pids": str(tmp_path)})
    d = tmp_path / "runv" / "c"
    d.mkdir(parents=True)
    for knob in ("memory.limit_in_bytes", "pids.max", "devices.deny"):
        (d / knob).write_text("")
    cgroups.update([str(d)], {"memory": {"limit": 64 * MiB}, "pids": {"limit": 5},
                              "devices": [{"allow": True, "access": "rwm"}]}, memory_floor=128 * MiB)
    assert (d / "memory.limit_in_bytes").read_text() == str(128 * MiB + cgroups.VM_OVERHEAD)
    assert (d / "pids.max").read_text() == str(cgroups.MIN_PIDS)
    assert (d / "devices.deny").read_text() == ""  # devices are not updatable
    cgroups.update([str(d)], {"memory": {"limit": 512 * MiB}}, memory_floor=128 * MiB)
    assert (d / "memory.limit_in_bytes").read_text() == str(512 * MiB + cgroups.VM_OVERHEAD)
    with pytest.raises(cgroups.CgroupError):
        cgroups.update([str(d)], {"memory": {"limit": "1g"}}, memory_floor=0)
    with pytest.raises(cgroups.CgroupError, match="gone"):
        cgroups.update([str(tmp_path / "gone")], {}, memory_floor=0)


def test_the_vm_boots_with_room_and_the_balloon_holds_it():
    from runv.errors import SpecError
    from runv.oci.resources import MAX_MEMORY_ANNOTATION, balloon_target_mb, guest_size

    size = guest_size({"linux": {"resources": {"memory": {"limit": 128 * MiB}}}})
    assert (size.memory_mb, size.ram_mb, size.balloon_mb) == (160, 320, 165)
    size = guest_size({"annotations": {MAX_MEMORY_ANNOTATION: str(1024 * MiB)},
                       "linux": {"resources": {"memory": {"limit": 128 * MiB}}}})
    assert (size.ram_mb, size.balloon_mb) == (1024, 176)
    assert balloon_target_mb(512 * MiB, 1024) == 512 + 32 + 16
    assert balloon_target_mb(4096 * MiB, 1024) == 1024  # no more than the VM has
    assert balloon_target_mb(-1, 1024) == 1024
    assert balloon_target_mb(1, 1024) == 64 + 16
    for bad in ("1g", "-1", "", "1" * 30, 5):
        with pytest.raises(SpecError):
            guest_size({"annotations": {MAX_MEMORY_ANNOTATION: bad}})
