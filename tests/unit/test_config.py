"""config.json: loading a bundle, schema validation (spec/*.json) and the default spec."""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from runv.errors import SpecError
from runv.oci import config
from runv.oci.default_spec import default_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNC = shutil.which("runc") or "/usr/sbin/runc"
CID = "3f1ad6e2b9d84c0c9d35c1b7a8e44e0d1b6a1f0f2e3c4d5e6f708192a3b4c5d6"

# What `docker run -it --memory 256m --cpus 1.5 --pids-limit 100 busybox` hands runc (docker 20.10).
DOCKER = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": True,
        "consoleSize": {"height": 50, "width": 200},
        "user": {"uid": 0, "gid": 0, "additionalGids": [10]},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOSTNAME=3f1ad6e2b9d8", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                             "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                             "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
                         for k in ("bounding", "effective", "permitted")},
        "apparmorProfile": "docker-default",
        "oomScoreAdj": 0,
    },
    "root": {"path": "/var/lib/docker/overlay2/abc/merged"},
    "hostname": "3f1ad6e2b9d8",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "bind",
         "source": f"/var/lib/docker/containers/{CID}/mounts/shm", "options": ["rbind", "rprivate"]},
        {"destination": "/etc/resolv.conf", "type": "bind",
         "source": f"/var/lib/docker/containers/{CID}/resolv.conf", "options": ["rbind", "rprivate"]},
        {"destination": "/etc/hostname", "type": "bind",
         "source": f"/var/lib/docker/containers/{CID}/hostname", "options": ["rbind", "rprivate"]},
        {"destination": "/etc/hosts", "type": "bind",
         "source": f"/var/lib/docker/containers/{CID}/hosts", "options": ["rbind", "rprivate"]},
    ],
    "hooks": {"prestart": [{"path": "/proc/1234/exe",
                            "args": ["libnetwork-setkey", "-exec-root=/var/run/docker", CID, "c0ffee1234"]}]},
    "linux": {
        "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0"},
        "resources": {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": True, "type": "c", "major": 136, "access": "rwm"},
                {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            ],
            "memory": {"limit": 268435456, "swap": 536870912, "disableOOMKiller": False},
            "cpu": {"shares": 0, "quota": 150000, "period": 100000},
            "pids": {"limit": 100},
            "blockIO": {"weight": 0},
        },
        "cgroupsPath": f"system.slice:docker:{CID}",
        "namespaces": [{"type": "mount"},
                       {"type": "network"}, {"type": "uts"}, {"type": "pid"}, {"type": "ipc"}],
        "seccomp": {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["accept", "read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            ],
        },
        "maskedPaths": ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                        "/sys/firmware"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
}

# What containerd 1.6's CRI plugin hands runc for a Kubernetes container.
CONTAINERD_CRI = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "user": {"uid": 65534, "gid": 65534, "additionalGids": [65534]},
        "args": ["/pause"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": "/",
        "capabilities": {k: ["CAP_CHOWN", "CAP_KILL"] for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": True,
        "oomScoreAdj": -998,
    },
    "root": {"path": "rootfs", "readonly": True},
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "bind", "source": "/run/containerd/io.containerd.grpc.v1.cri/"
         "sandboxes/abc/shm", "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]},
        {"destination": "/etc/resolv.conf", "type": "bind",
         "source": "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/abc/resolv.conf",
         "options": ["rbind", "ro"]},
    ],
    "annotations": {
        "io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-id": "abc",
        "io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/default_nginx_uid",
        "io.kubernetes.cri.sandbox-name": "nginx",
        "io.kubernetes.cri.sandbox-namespace": "default",
    },
    "linux": {
        "resources": {
            "devices": [{"allow": False, "access": "rwm"}],
            "cpu": {"shares": 2, "quota": 50000, "period": 100000, "cpus": "0-3", "mems": "0"},
            "memory": {"limit": 134217728, "swap": 134217728},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 0}, {"pageSize": "1GB", "limit": 0}],
            "unified": {"memory.high": "107374182", "memory.oom.group": "1"},
        },
        "cgroupsPath": "kubepods-besteffort-podabc.slice:cri-containerd:abc",
        "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                       {"type": "network", "path": "/var/run/netns/cni-1234"}],
        "seccomp": {"defaultAction": "SCMP_ACT_ERRNO",
                    "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
                    "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]},
        "maskedPaths": ["/proc/acpi", "/sys/firmware"],
        "readonlyPaths": ["/proc/bus", "/proc/sys"],
        "mountLabel": "",
    },
}

# `ctr run busybox`-style: containerd's default Unix spec.
CONTAINERD_CTR = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": "/",
        "capabilities": {k: ["CAP_CHOWN", "CAP_AUDIT_WRITE"] for k in ("bounding", "effective", "permitted")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs"},
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"},
                                  {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]},
        "cgroupsPath": "/default/busybox",
        "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                       {"type": "network"}],
        "maskedPaths": ["/proc/acpi"],
        "readonlyPaths": ["/proc/bus"],
    },
}

# Fields of runtime-spec 1.1 that runc 1.1 knows, most of them at once.
SPEC_1_1 = {
    "ociVersion": "1.1.0",
    "domainname": "example.org",
    "hostname": "box",
    "annotations": None,
    "process": {
        "args": ["sh"], "cwd": "/tmp",
        "user": {"uid": 1000, "gid": 1000, "umask": 18, "username": "me"},
        "rlimits": [{"type": "RLIMIT_MEMLOCK", "hard": 18446744073709551615, "soft": 65536}],
        "selinuxLabel": "system_u:system_r:container_t:s0",
        "scheduler": {"policy": "SCHED_OTHER", "nice": -5},
        "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
    },
    "root": {"path": "rootfs"},
    "mounts": [{"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "idmap"],
                "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]},
               {"destination": "/tmp"}],
    "hooks": {
        "createRuntime": [{"path": "/usr/bin/netns-setup", "args": ["netns-setup", "up"], "timeout": 5}],
        "createContainer": [{"path": "/usr/bin/true"}],
        "startContainer": [{"path": "/bin/echo", "env": ["A=1"]}],
        "poststart": [{"path": "/bin/true"}],
        "poststop": [{"path": "/bin/true"}],
    },
    "linux": {
        "namespaces": [{"type": "user"}, {"type": "cgroup"}, {"type": "time"}, {"type": "mount"}],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        "timeOffsets": {"monotonic": {"secs": 3600, "nanosecs": 0}},
        "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438,
                     "uid": 0, "gid": 0}],
        "resources": {
            "memory": {"limit": -1, "reservation": 1048576, "swap": -1, "swappiness": 60,
                       "useHierarchy": True, "checkBeforeUpdate": True},
            "cpu": {"burst": 10000, "realtimeRuntime": 950000, "realtimePeriod": 1000000, "idle": 1},
            "blockIO": {"weight": 500, "leafWeight": 300,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 300}],
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}]},
            "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
            "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
        },
        "intelRdt": {"closID": "guaranteed_group", "l3CacheSchema": "L3:0=7f0;1=1f",
                     "memBwSchema": "MB:0=20;1=70", "enableCMT": True, "enableMBM": True},
        "seccomp": {"defaultAction": "SCMP_ACT_KILL_PROCESS",
                    "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                    "listenerPath": "/run/seccomp-agent.socket", "listenerMetadata": "foo",
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
                                 {"names": ["chmod"], "action": "SCMP_ACT_LOG"}]},
        "rootfsPropagation": "rslave",
        "personality": {"domain": "LINUX32"},
        "sysctl": {"net.ipv4.ip_forward": "1"},
        "mountLabel": "system_u:object_r:container_file_t:s0",
    },
}


def write_bundle(tmp_path, cfg, rootfs: str | None = "rootfs"):
    if rootfs:
        os.makedirs(tmp_path / rootfs, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return str(tmp_path)


def spec_error(cfg) -> str:
    with pytest.raises(SpecError) as e:
        config.validate(cfg)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_default_config_is_valid_and_fresh():
    config.validate(default_config())
    config.validate(default_config(rootless=True))
    a = default_config()
    a["process"]["args"].append("x")
    a["process"]["capabilities"]["bounding"].clear()
    assert default_config()["process"]["args"] == ["sh"]
    assert default_config()["process"]["capabilities"]["bounding"]


def test_default_config_contents():
    c = default_config()
    p = c["process"]
    assert p["args"] == ["sh"] and p["terminal"] is True and p["cwd"] == "/"
    assert set(p["capabilities"]) == {"bounding", "effective", "permitted", "ambient"}
    assert p["capabilities"]["bounding"] == ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert [ns["type"] for ns in c["linux"]["namespaces"]] == ["pid", "network", "ipc", "uts", "mount"]
    assert [m["destination"] for m in c["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    assert "/proc/kcore" in c["linux"]["maskedPaths"] and "/proc/sys" in c["linux"]["readonlyPaths"]
    r = default_config(rootless=True)
    assert [ns["type"] for ns in r["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount", "user"]
    assert r["linux"]["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert "resources" not in r["linux"]
    assert not any(o.startswith("gid=") for m in r["mounts"] for o in m.get("options", []))


@pytest.mark.parametrize("rootless", [False, True])
def test_default_config_is_what_runc_spec_writes(tmp_path, rootless):
    flags = ["--rootless"] if rootless else []
    subprocess.run([RUNC, "spec", *flags], cwd=tmp_path, check=True)
    runc = (tmp_path / "config.json").read_text()
    ours = default_config(rootless)
    ours["ociVersion"] = json.loads(runc)["ociVersion"]  # runc's vendored spec version may differ
    assert ours["hostname"] == "runv"
    ours["hostname"] = "runc"
    assert json.dumps(ours, indent="\t") == runc


@pytest.mark.parametrize("cfg", [DOCKER, CONTAINERD_CRI, CONTAINERD_CTR, SPEC_1_1],
                         ids=["docker", "containerd-cri", "containerd-ctr", "spec-1.1"])
def test_engine_configs_are_valid(cfg):
    config.validate(cfg)


def test_minimal_config_is_valid():
    config.validate({"ociVersion": "1.0.2"})


def test_every_ref_resolves():
    """Also the $refs that the example configs do not reach."""
    from referencing import Registry, Resource

    schemas = {n: json.load(open(os.path.join(config.SCHEMA_DIR, n))) for n in config.SCHEMA_FILES}
    registry = Registry().with_resources((n, Resource.from_contents(s)) for n, s in schemas.items())

    def refs(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    yield v
                else:
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    count = 0
    for name, schema in schemas.items():
        resolver = registry.resolver(base_uri=name)
        for ref in refs(schema):
            resolver.lookup(ref)
            count += 1
    assert count > 50


def test_schema_readme_names_the_version():
    readme = open(os.path.join(REPO, "spec", "README.md")).read()
    assert "1.0.2" in readme and "1.1.0" in readme


def with_change(path: str, value, base=DOCKER):
    """A copy of base with the value at a.b[0].c replaced (or deleted if value is DELETE)."""
    cfg = copy.deepcopy(base)
    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    node = cfg
    for k in keys[:-1]:
        node = node[k]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return cfg


DELETE = object()


@pytest.mark.parametrize("path,value,expected", [
    ("process.user.uid", "abc", "config.json: process.user.uid: 'abc' is not of type 'integer'"),
    ("process.user.uid", -1, "config.json: process.user.uid: -1 is less than the minimum of 0"),
    ("process.user.gid", 2**32,
     "config.json: process.user.gid: 4294967296 is greater than the maximum of 4294967295"),
    ("process.cwd", DELETE, "config.json: process: 'cwd' is a required property"),
    ("process.terminal", "yes", "config.json: process.terminal: 'yes' is not of type 'boolean'"),
    ("process.env", "A=1", "config.json: process.env: 'A=1' is not of type 'array'"),
    ("process.args", ["sh", 1], "config.json: process.args[1]: 1 is not of type 'string'"),
    ("process.rlimits", [{"type": "NOFILE", "hard": 1, "soft": 1}],
     "config.json: process.rlimits[0].type: 'NOFILE' does not match '^RLIMIT_[A-Z]+$'"),
    ("ociVersion", DELETE, "config.json: 'ociVersion' is a required property"),
    ("root.path", DELETE, "config.json: root: 'path' is a required property"),
    ("mounts[7].destination", DELETE, "config.json: mounts[7]: 'destination' is a required property"),
    ("hooks.prestart[0].path", DELETE, "config.json: hooks.prestart[0]: 'path' is a required property"),
    ("hooks.poststop", [{"path": "/bin/true", "timeout": 0}],
     "config.json: hooks.poststop[0].timeout: 0 is less than the minimum of 1"),
    ("linux.namespaces[1].type", "net", "config.json: linux.namespaces[1].type: 'net' is not one of"),
    ("linux.seccomp.defaultAction", DELETE,
     "config.json: linux.seccomp: 'defaultAction' is a required property"),
    ("linux.seccomp.syscalls[2].args[0].op", "EQ",
     "config.json: linux.seccomp.syscalls[2].args[0].op: 'EQ' is not one of"),
    ("linux.seccomp.architectures[0]", "x86_64",
     "config.json: linux.seccomp.architectures[0]: 'x86_64' is not one of"),
    ("linux.resources.memory.limit", "256m",
     "config.json: linux.resources.memory.limit: '256m' is not of type 'integer'"),
    ("linux.resources.devices[0].allow", DELETE,
     "config.json: linux.resources.devices[0]: 'allow' is a required property"),
    ("linux.sysctl", {"net.ipv4.ip_forward": 1},
     "config.json: linux.sysctl.net.ipv4.ip_forward: 1 is not of type 'string'"),
    ("linux.rootfsPropagation", "everywhere",
     "config.json: linux.rootfsPropagation: 'everywhere' is not one of"),
    ("annotations", {"a": 1}, "config.json: annotations.a: 1 is not of type 'string'"),
    ("annotations", [], "config.json: annotations: [] is not valid under any of the given schemas"),
])
def test_schema_errors(path, value, expected):
    assert spec_error(with_change(path, value)).startswith(expected)


def test_schema_error_for_a_non_object():
    assert spec_error([]) == "config.json: [] is not of type 'object'"


def test_schema_error_is_short():
    cfg = with_change("linux.seccomp", "x" * 5000)
    assert len(spec_error(cfg)) < 400


def test_validator_is_compiled_once():
    assert config._validator() is config._validator()


def test_jsonschema_is_imported_lazily():
    code = "import sys, runv.oci.config, runv.oci.default_spec; print('jsonschema' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_json_path():
    assert config.json_path([]) == ""
    assert config.json_path(["process", "user", "uid"]) == "process.user.uid"
    assert config.json_path(["mounts", 3, "options", 0]) == "mounts[3].options[0]"


# load(): the checks before a container is created


def test_load_default_bundle(tmp_path):
    b = config.load(write_bundle(tmp_path, default_config()))
    assert b.path == str(tmp_path)
    assert b.rootfs == str(tmp_path / "rootfs")
    assert b.config["process"]["args"] == ["sh"]


def test_load_relative_bundle_and_absolute_root(tmp_path, monkeypatch):
    os.makedirs(tmp_path / "elsewhere" / "root")
    cfg = with_change("root.path", str(tmp_path / "elsewhere" / "root" / "."), base=CONTAINERD_CTR)
    os.makedirs(tmp_path / "b")
    write_bundle(tmp_path / "b", cfg, rootfs=None)
    monkeypatch.chdir(tmp_path)
    b = config.load("b")
    assert b.path == str(tmp_path / "b")
    assert b.rootfs == str(tmp_path / "elsewhere" / "root")


@pytest.mark.parametrize("cfg", [DOCKER, CONTAINERD_CRI, CONTAINERD_CTR, SPEC_1_1],
                         ids=["docker", "containerd-cri", "containerd-ctr", "spec-1.1"])
def test_load_engine_configs(tmp_path, cfg):
    b = config.load(write_bundle(tmp_path, with_change("root.path", "rootfs", base=cfg)))
    assert b.rootfs == str(tmp_path / "rootfs")


def load_error(bundle: str) -> str:
    with pytest.raises(SpecError) as e:
        config.load(bundle)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_load_missing_config(tmp_path):
    assert load_error(str(tmp_path)) == f"open {tmp_path}/config.json: no such file or directory"
    assert load_error(str(tmp_path / "nope")) == \
        f"open {tmp_path}/nope/config.json: no such file or directory"


def test_load_invalid_json(tmp_path):
    (tmp_path / "config.json").write_text('{\n  "ociVersion": "1.0.2",\n  "process": {]\n}\n')
    assert load_error(str(tmp_path)) == \
        "config.json: invalid JSON: Expecting property name enclosed in double quotes at line 3 column 15"
    (tmp_path / "config.json").write_text("")
    assert load_error(str(tmp_path)) == "config.json: invalid JSON: Expecting value at line 1 column 1"
    (tmp_path / "config.json").write_bytes(b'{"hostname": "\xff"}')
    assert load_error(str(tmp_path)).startswith("config.json: not UTF-8 text")


def test_load_schema_violation(tmp_path):
    bundle = write_bundle(tmp_path, with_change("process.user.uid", "abc", base=default_config()))
    assert load_error(bundle) == "config.json: process.user.uid: 'abc' is not of type 'integer'"


@pytest.mark.parametrize("path,value,expected", [
    ("process", DELETE, "config.json: process is required to create a container"),
    ("process.args", DELETE, "config.json: process.args must not be empty"),
    ("process.args", [], "config.json: process.args must not be empty"),
    ("process.cwd", "tmp", "config.json: process.cwd 'tmp' must be an absolute path"),
    ("root", DELETE, "config.json: root.path is required"),
])
def test_load_process_and_root_errors(tmp_path, path, value, expected):
    assert load_error(write_bundle(tmp_path, with_change(path, value, base=default_config()))) == expected


def test_load_rootfs_missing_or_not_a_directory(tmp_path):
    bundle = write_bundle(tmp_path, default_config(), rootfs=None)
    assert load_error(bundle) == f"rootfs ({tmp_path}/rootfs) does not exist"
    (tmp_path / "rootfs").write_text("")
    assert load_error(bundle) == f"rootfs ({tmp_path}/rootfs) is not a directory"


# strings the guest cannot take, and JSON too deep to parse

@pytest.mark.parametrize("path,value,where", [
    ("process.args", ["sh", "a\0b"], "process.args[1]"),
    ("process.env", ["X=\ud800"], "process.env[0]"),
    ("hostname", "h\0st", "hostname"),
    ("mounts[0].destination", "/pr\0c", "mounts[0].destination"),
])
def test_load_refuses_nul_and_lone_surrogates(tmp_path, path, value, where):
    bundle = write_bundle(tmp_path, with_change(path, value, base=default_config()))
    assert load_error(bundle).startswith(f"config.json: {where}: a string ")


def test_load_refuses_json_nested_too_deep(tmp_path):
    (tmp_path / "config.json").write_text('{"annotations": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert load_error(str(tmp_path)) == "config.json: invalid JSON: nested too deeply"


# `runv exec --process FILE`: the schema of config.json's process

PROCESS = {"args": ["sh"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}


@pytest.mark.parametrize("path,value,expected", [
    ("args", ["sh", 1], "p.json: args[1]: 1 is not of type 'string'"),
    ("args", [], "p.json: args must not be empty"),
    ("args", DELETE, "p.json: args must not be empty"),
    ("cwd", DELETE, "p.json: 'cwd' is a required property"),
    ("cwd", "tmp", "p.json: cwd 'tmp' must be an absolute path"),
    ("user.uid", -1, "p.json: user.uid: -1 is less than the minimum of 0"),
    ("user.gid", 2**32, "p.json: user.gid: 4294967296 is greater than the maximum of 4294967295"),
    ("env", "X=1", "p.json: env: 'X=1' is not of type 'array'"),
    ("terminal", "yes", "p.json: terminal: 'yes' is not of type 'boolean'"),
    ("env", ["X=a\0b"], "p.json: env[0]: a string contains a NUL character"),
])
def test_exec_process_is_validated(path, value, expected):
    with pytest.raises(SpecError) as e:
        config.validate_process(with_change(path, value, base=PROCESS), "p.json")
    assert str(e.value).startswith(expected)


def test_exec_process_that_is_not_an_object():
    for doc in ([], "sh", None, 5):
        with pytest.raises(SpecError, match="p.json: .* is not of type 'object'"):
            config.validate_process(doc, "p.json")
    config.validate_process(PROCESS, "p.json")


def test_explained_names_the_malformed_field():
    cfg = with_change("linux.namespaces", [1], base=default_config())

    def uses_namespaces(c):
        return [ns.get("type") for ns in c["linux"]["namespaces"]]
    with pytest.raises(SpecError, match=r"linux.namespaces\[0\]"):
        config.explained(cfg, uses_namespaces, cfg)
    with pytest.raises(ZeroDivisionError):  # a valid config: a bug stays a bug
        config.explained(default_config(), lambda: 1 / 0)


def test_a_validating_child_that_dies_without_a_verdict_is_an_error():
    """A validator killed (OOM, a signal) before it answered must not pass the config."""
    import os
    import signal

    from runv.oci.config import SpecError, Validation

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    os.close(w)
    with pytest.raises(SpecError, match="the validating process died"):
        Validation(pid, r)()


def test_validating_in_a_child_gives_its_verdict():
    from runv.oci.config import SpecError, validating

    bad = validating({"ociVersion": 3})
    ok = validating({"ociVersion": "1.0.2", "process": {"args": ["true"], "cwd": "/"}, "root": {"path": "rootfs"}})
    ok()
    with pytest.raises(SpecError, match="ociVersion"):
        bad()
