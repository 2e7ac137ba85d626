"""Property: any config.json, and any exec process JSON, gives runv either
success or a RunvError with a message (which the CLI prints as one `runv:`
line), never another exception.

The documents are random JSON and mutations of real configs (a value replaced
by random JSON or by an edge value, a key deleted or added). Each goes through
what runv does with it before anything is sent to the guest, in runv's order:
`config.load` (schema check deferred, as `create` does), the hooks and the
cgroup checks that run before the schema check, then guest sizing, the mount
plan and the CREATE records (the shim's `explained` pattern), then the schema.

HYPOTHESIS_PROFILE=fuzz runs 10,000 documents per property (tests/conftest.py).
"""
from __future__ import annotations

import argparse
import copy
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runv.agent.records import create_payload, exec_payload
from runv.errors import RunvError
from runv.exec import process_from_args
from runv.host import cgroups, hooks
from runv.oci import config, mounts, resources
from runv.oci.default_spec import default_config

pytestmark = pytest.mark.property

EDGE_INTS = [-1, 0, 1, 101, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -2**63 - 1, 10**30]
EDGE_STRINGS = ["", "x", "/", "..", "../../etc", "/a/../../b", "a\nb", "\0", "a\0b", "\ud800", "cgroup.procs",
                "memory.max", "cgroup.subtree_control", "RLIMIT_NOFILE", "SCMP_ACT_ALLOW", "bind", "rbind",
                "system.slice:docker:x", "2MB", "0-3,7", "0-1\n5", "x" * 70_000]

scalars = (st.none() | st.booleans() | st.integers() | st.sampled_from(EDGE_INTS)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20)
           | st.sampled_from(EDGE_STRINGS))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.sampled_from(
        ["args", "cwd", "env", "user", "uid", "path", "type", "limit", "memory", "cpu", "unified"]),
        inner, max_size=4),
    max_leaves=12)


def _paths(node, prefix=()):
    """Every place in a document: (path to the container, key or index)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix, k
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix, i
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw, base):
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        places = list(_paths(doc))
        if not places:
            break
        where, key = draw(st.sampled_from(places))
        parent = doc
        for k in where:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[key] = draw(json_values)
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(json_values)
        else:
            parent.append(draw(json_values))
    return doc


def _rich_config() -> dict:
    """The default config with one of nearly everything runv turns into records or cgroup writes."""
    cfg = default_config()
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]
    cfg["process"]["user"].update({"umask": 18, "additionalGids": [1, 2]})
    cfg["process"]["oomScoreAdj"] = 10
    cfg["mounts"].append({"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "ro"]})
    cfg["linux"].update({
        "cgroupsPath": "/runv-fuzz/c",
        "sysctl": {"net.ipv4.ip_forward": "1"},
        "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                                  "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
    })
    cfg["linux"]["resources"].update({
        "memory": {"limit": 2**28, "swap": 2**29, "swappiness": 10, "disableOOMKiller": False},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 100},
        "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4096}],
        "network": {"classID": 1, "priorities": [{"name": "eth0", "priority": 1}]},
        "unified": {"memory.high": "max"},
    })
    cfg["hooks"] = {"poststop": [{"path": "/bin/true", "timeout": 5}]}
    cfg["annotations"] = {"a": "b"}
    return cfg


RICH = _rich_config()
PROCESS = {**RICH["process"], "args": ["sh", "-c", "true"], "env": ["PATH=/bin", "X=1"]}


def prepare(bundle: str, doc) -> None:
    """What runv does with a bundle's config.json before it sends CREATE."""
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(doc, f)
    b = config.load(bundle, schema=False)
    cfg = b.config
    config.explained(cfg, hooks.validate, cfg.get("hooks"))
    linux = cfg.get("linux")
    cgroups.check(linux.get("resources") if isinstance(linux, dict) else None)
    cgroups.cgroup_path(cfg, "c")
    config.explained(cfg, resources.guest_size, cfg)
    plan = config.explained(cfg, mounts.plan, cfg, b.path)
    config.explained(cfg, create_payload, cfg, plan.mounts, plan.guest_dirs)
    config.validate(cfg)


def _only_runv_errors(fn, *args) -> None:
    try:
        fn(*args)
    except RunvError as e:
        assert str(e).strip(), f"{type(e).__name__} without a message"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("bundle")
    (path / "rootfs").mkdir()
    return str(path)


SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


@SETTINGS
@given(doc=mutated(RICH) | mutated(default_config()))
def test_mutated_configs(bundle, doc):
    _only_runv_errors(prepare, bundle, doc)


@SETTINGS
@given(doc=json_values | st.fixed_dictionaries({"ociVersion": st.just("1.0.2"), "root": json_values,
                                                "process": json_values, "linux": json_values}))
def test_random_configs(bundle, doc):
    _only_runv_errors(prepare, bundle, doc)


@SETTINGS
@given(doc=json_values)
def test_random_resources_and_cgroups_paths(doc):
    """The cgroup checks run before the schema: they must take anything."""
    _only_runv_errors(cgroups.check, doc)
    _only_runv_errors(cgroups.check, {"memory": doc, "cpu": doc, "unified": doc, "devices": doc})
    _only_runv_errors(cgroups.cgroup_path, {"linux": {"cgroupsPath": doc}}, "c")


def exec_process(path: str, doc) -> None:
    """What `runv exec --process` and then the shim do with the process before EXEC."""
    with open(path, "w") as f:
        json.dump(doc, f)
    process = process_from_args(argparse.Namespace(process=path))
    exec_payload(process)


@SETTINGS
@given(doc=mutated(PROCESS) | json_values)
def test_exec_process_documents(tmp_path, doc):
    _only_runv_errors(exec_process, str(tmp_path / "process.json"), doc)


def test_the_bases_are_valid(bundle, tmp_path):
    prepare(bundle, RICH)
    prepare(bundle, default_config())
    exec_process(str(tmp_path / "p.json"), PROCESS)
