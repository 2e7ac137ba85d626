"""The container's guest cgroup is held below the guest's memory, with or
without a limit of its own, so that the cgroup's OOM killer ends a container
that eats it all, not a livelock of the whole guest."""
from __future__ import annotations

from runv.agent import protocol as P
from runv.agent.records import create_records, guest_cgroup, guest_sysctls, update_payload
from runv.oci.default_spec import default_config
from runv.oci.resources import DEFAULT_MEMORY_MB, GUEST_OVERHEAD_MB, container_memory_max, guest_size

MiB = 2**20


def knobs(payload: bytes) -> dict[bytes, bytes]:
    return dict(tuple(v.split(b"\0")[:2]) for tag, v in P.decode_records(payload) if tag == P.Tag.CGROUP)


def sysctls(payload: bytes) -> dict[bytes, bytes]:
    return dict(tuple(v.split(b"\0", 1)) for tag, v in P.decode_records(payload) if tag == P.Tag.SYSCTL)


def test_the_cap_is_the_guests_memory_less_its_own():
    assert container_memory_max(None, 128) == (128 - GUEST_OVERHEAD_MB) * MiB
    assert container_memory_max(-1, 128) == (128 - GUEST_OVERHEAD_MB) * MiB
    assert container_memory_max(64 * MiB, 96) == 64 * MiB
    assert container_memory_max(300 * MiB, 256) == (256 - GUEST_OVERHEAD_MB) * MiB  # more than the guest has
    assert container_memory_max(300 * MiB, 0) == 300 * MiB  # the guest's memory not known: as given
    assert container_memory_max(-1, 0) is None
    assert container_memory_max(True, 128) == (128 - GUEST_OVERHEAD_MB) * MiB  # not a number of bytes
    assert container_memory_max(None, 1) == MiB  # never 0 (the cgroup would kill at once) nor negative


def test_a_container_without_a_limit_gets_the_cap():
    config = default_config()
    assert not (config["linux"]["resources"].get("memory") or {}).get("limit")
    got = knobs(create_records(config, [], []))
    assert got[b"memory.max"] == str((DEFAULT_MEMORY_MB - GUEST_OVERHEAD_MB) * MiB).encode()
    assert guest_size(config).memory_mb == DEFAULT_MEMORY_MB


def test_a_limit_is_kept_as_given():
    for limit in (1 * MiB, 64 * MiB, 1000 * MiB + 1):
        config = default_config()
        config["linux"]["resources"]["memory"] = {"limit": limit}
        assert knobs(create_records(config, [], []))[b"memory.max"] == str(limit).encode()


def test_update_caps_only_what_it_knows():
    assert knobs(update_payload({"memory": {"limit": -1}}))[b"memory.max"] == b"max"
    assert knobs(update_payload({"memory": {"limit": -1}}, 300))[b"memory.max"] == str(268 * MiB).encode()
    assert b"memory.max" not in knobs(update_payload({"pids": {"limit": 5}}))  # the cap stays as it was
    assert guest_cgroup({"resources": {"memory": {"limit": 0}}}) == []


def test_panic_on_oom_panics_at_the_cap():
    """Without a limit the cap stands for the VM's memory: its OOM is the
    system's, which panic_on_oom=1 means; with a limit, a cgroup's OOM kills."""
    config = default_config()
    config["linux"]["sysctl"] = {"vm.panic_on_oom": "1", "vm.overcommit_memory": "1"}
    assert sysctls(create_records(config, [], [])) == {b"vm.panic_on_oom": b"2", b"vm.overcommit_memory": b"1"}
    assert config["linux"]["sysctl"]["vm.panic_on_oom"] == "1"  # the config itself is not changed
    config["linux"]["resources"]["memory"] = {"limit": 64 * MiB}
    assert sysctls(create_records(config, [], []))[b"vm.panic_on_oom"] == b"1"
    assert guest_sysctls({"sysctl": {"vm/panic_on_oom": "1 "}}, True) == {"vm/panic_on_oom": "2"}
    assert guest_sysctls({"sysctl": {"vm.panic_on_oom": "0"}}, True) == {"vm.panic_on_oom": "0"}
    assert guest_sysctls({"sysctl": {"vm.panic_on_oom": "2"}}, False) == {"vm.panic_on_oom": "2"}


def test_a_pods_next_container_is_not_capped_by_its_own_size():
    """Its VM is the pod's, sized by the first container: its own config says nothing of it."""
    from runv.agent.records import create_payload, member_records

    config = default_config()
    config["linux"]["sysctl"] = {"vm.panic_on_oom": "1"}
    payload = create_payload(config, [], [], member_records(config["linux"], "/run/pod/2/rootfs"))
    assert b"memory.max" not in knobs(payload)
    assert sysctls(payload)[b"vm.panic_on_oom"] == b"1"
    assert b"memory.max" in knobs(create_payload(config, [], []))
