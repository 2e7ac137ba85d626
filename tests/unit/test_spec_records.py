"""config.json -> agent records: mount options and namespaces, parsed as runc does."""
import struct

from runv.agent import records as spec
from runv.agent.protocol import Tag, decode_records
from runv.host import syscalls


def test_mount_options():
    flags, pflags, data = spec.parse_mount_options(["nosuid", "noexec", "nodev", "ro", "mode=755", "rprivate"])
    assert flags == spec.MS_NOSUID | spec.MS_NOEXEC | spec.MS_NODEV | spec.MS_RDONLY
    assert pflags == spec.MS_PRIVATE | spec.MS_REC
    assert data == "mode=755"
    assert spec.parse_mount_options(["ro", "rw"])[0] == 0


def test_mount_record_layout():
    (tag, value), = decode_records(spec.mount_record("tmpfs", "tmpfs", "/dev", ["nosuid", "mode=755"]))
    assert tag == Tag.MOUNT
    flags, pflags = struct.unpack_from("<II", value)
    assert (flags, pflags) == (spec.MS_NOSUID, 0)
    assert value[8:] == b"tmpfs\0tmpfs\0/dev\0mode=755\0"


def test_namespaces_always_include_mount_and_skip_network():
    linux = {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "user"},
                            {"type": "uts", "path": "/proc/1/ns/uts"}]}
    assert spec.namespace_flags(linux) == syscalls.CLONE_NEWNS | syscalls.CLONE_NEWPID | syscalls.CLONE_NEWUSER
    assert spec.namespace_flags({}) == spec.CLONE_NEWNS


def test_user_namespace_maps():
    import pytest

    from runv.errors import SpecError

    linux = {"namespaces": [{"type": "user"}],
             "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 2000}],
             "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 3000},
                             {"containerID": 5000, "hostID": 9000, "size": 1}]}
    recs = decode_records(b"".join(spec.id_map_records(linux)))
    assert recs == [(Tag.UID_MAP, struct.pack("<3I", 0, 1000, 2000)),
                    (Tag.GID_MAP, struct.pack("<6I", 0, 1000, 3000, 5000, 9000, 1))]
    assert spec.id_map_records({"uidMappings": linux["uidMappings"]}) == []  # no user namespace
    with pytest.raises(SpecError, match="needs linux.gidMappings"):
        spec.id_map_records({"namespaces": [{"type": "user"}], "uidMappings": linux["uidMappings"]})
    with pytest.raises(SpecError, match="not a valid range"):
        spec.id_map_records({**linux, "uidMappings": [{"containerID": 0, "hostID": -1, "size": 1}]})


def test_rlimits_default_to_runvs_own_then_the_configs():
    import resource

    got = spec.rlimits([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}])
    assert got[-1] == (7, 10, 20) and [r for r in got if r[0] == 7] == [(7, 10, 20)]
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    inf = 2**64 - 1
    want = tuple(inf if v == resource.RLIM_INFINITY else v for v in (soft, hard))
    assert (3, *want) in got
    assert {r[0] for r in got} == set(range(16))


def test_seccomp_record():
    recs = decode_records(spec.create_records(
        {"process": {"args": ["x"]}, "linux": {"seccomp": {
            "defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}}}, [], []))
    prog = [v for t, v in recs if t == Tag.SECCOMP]
    assert len(prog) == 1 and len(prog[0]) % 8 == 0 and len(prog[0]) > 8
    assert (Tag.SECCOMP_FLAGS, struct.pack("<I", 2)) in recs


def test_process_records():
    recs = decode_records(spec.process_records(
        {"args": ["sh", "-c", "true"], "env": ["A=1"], "cwd": "/tmp",
         "user": {"uid": 5, "gid": 6, "additionalGids": [7]}}))
    assert [r for r in recs if r[0] == Tag.ARG] == [(Tag.ARG, b"sh"), (Tag.ARG, b"-c"), (Tag.ARG, b"true")]
    assert (Tag.CWD, b"/tmp") in recs
    assert (Tag.ADDGID, struct.pack("<I", 7)) in recs


def test_capabilities_and_rlimits():
    import pytest

    from runv.errors import SpecError
    from runv.oci.capabilities import mask, masks

    assert mask(["CAP_CHOWN", "CAP_KILL"]) == 1 << 0 | 1 << 5
    assert masks(None) == [0] * 5
    assert masks({"bounding": ["CAP_SYS_ADMIN"]})[0] == 1 << 21
    with pytest.raises(SpecError, match='unknown capability "CAP_FOO"'):
        mask(["CAP_FOO"])
    recs = decode_records(spec.process_records(
        {"args": ["x"], "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}],
         "noNewPrivileges": True, "oomScoreAdj": -5}))
    assert (Tag.RLIMIT, struct.pack("<IQQ", 7, 1024, 4096)) in recs
    assert (Tag.NO_NEW_PRIVS, struct.pack("<I", 1)) in recs
    assert (Tag.OOM_SCORE_ADJ, struct.pack("<i", -5)) in recs
    with pytest.raises(SpecError):
        spec.rlimit_number("RLIMIT_BOGUS")


# payloads that do not fit one frame are refused before anything is sent

import pytest  # noqa: E402

from runv.agent.protocol import MAX_PAYLOAD  # noqa: E402
from runv.errors import SpecError  # noqa: E402
from runv.oci.default_spec import default_config  # noqa: E402


def test_exec_payload_over_the_frame_limit():
    process = {"args": ["sh"], "cwd": "/", "env": ["X=" + "x" * MAX_PAYLOAD]}
    with pytest.raises(SpecError, match=f"over the limit of {MAX_PAYLOAD}"):
        spec.exec_payload(process)
    process = {"args": ["a"] * (MAX_PAYLOAD // 8), "cwd": "/"}  # many small ones add up
    with pytest.raises(SpecError, match="the process takes"):
        spec.exec_payload(process)
    assert len(spec.exec_payload({"args": ["sh"], "cwd": "/"})) < 1000


def test_create_payload_over_the_frame_limit():
    cfg = default_config()
    cfg["process"]["args"] = ["sh", "x" * MAX_PAYLOAD]
    with pytest.raises(SpecError, match="the container's config takes"):
        spec.create_payload(cfg, [], [])
    cfg["process"]["args"] = ["sh"]
    cfg["linux"]["maskedPaths"] = ["/p" * 100] * 400
    with pytest.raises(SpecError, match="the container's config takes"):
        spec.create_payload(cfg, [], [])


def test_device_numbers_must_fit_the_record():
    cfg = default_config()
    cfg["linux"]["devices"] = [{"path": "/dev/x", "type": "c", "major": -1, "minor": 0}]
    with pytest.raises(SpecError, match=r"linux.devices\[0\]"):
        spec.create_records(cfg, [], [])
