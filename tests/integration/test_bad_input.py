"""Bad input gets one clear line, a non-zero exit, and leaves nothing behind."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

from runv_testlib import leftovers, one_line_error


def assert_clean(runv):
    assert not os.path.isdir(runv.root) or os.listdir(runv.root) == []
    assert leftovers() == []


def test_missing_config(runv, tmp_path):
    line = one_line_error(runv("run", "--bundle", str(tmp_path), "c"))
    assert "config.json" in line
    assert_clean(runv)


def test_invalid_json(runv, make_bundle):
    bundle = make_bundle(["true"])
    with open(os.path.join(bundle, "config.json"), "w") as f:
        f.write("{not json")
    assert "config.json" in one_line_error(runv("run", "--bundle", bundle, "c"))
    assert_clean(runv)


def test_schema_violation_names_the_field(runv, make_bundle):
    bundle = make_bundle(["true"], user={"uid": "root", "gid": 0})
    line = one_line_error(runv("run", "--bundle", bundle, "c"))
    assert "process.user.uid" in line
    assert_clean(runv)


def test_missing_process(runv, make_bundle):
    def drop(config):
        del config["process"]
    assert "process" in one_line_error(runv("create", "--bundle", make_bundle([], config_edit=drop), "c"))
    assert_clean(runv)


def test_missing_rootfs(runv, make_bundle):
    bundle = make_bundle(["true"])
    shutil.rmtree(os.path.join(bundle, "rootfs"))
    assert "rootfs" in one_line_error(runv("run", "--bundle", bundle, "c"))
    assert_clean(runv)


def test_missing_executable_fails_at_create(runv, make_bundle):
    line = one_line_error(runv("create", "--bundle", make_bundle(["/no/such/binary"]), "c", detached=True))
    assert "/no/such/binary" in line
    assert_clean(runv)


def test_unknown_id(runv):
    for cmd in (["state", "nope"], ["start", "nope"], ["kill", "nope"], ["delete", "nope"],
                ["pause", "nope"], ["ps", "nope"]):
        assert "does not exist" in one_line_error(runv(*cmd))
    assert runv("delete", "--force", "nope").returncode == 0


def test_invalid_ids(runv, make_bundle):
    bundle = make_bundle(["true"])
    for bad in ("a/b", "..", "x" * 1025):
        assert "invalid container id" in one_line_error(runv("run", "--bundle", bundle, bad))
    assert_clean(runv)


def test_duplicate_id_and_wrong_states(runv, make_bundle):
    bundle = make_bundle(["sleep", "300"])
    assert runv("create", "--bundle", bundle, "dup", detached=True).returncode == 0
    try:
        assert "exists" in one_line_error(runv("create", "--bundle", bundle, "dup", detached=True))
        assert runv("start", "dup").returncode == 0
        assert "running" in one_line_error(runv("start", "dup"))
        assert "not stopped" in one_line_error(runv("delete", "dup"))
        assert runv("kill", "dup", "KILL").returncode == 0
        deadline = time.monotonic() + 60
        while runv.state("dup")["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "not running" in one_line_error(runv("kill", "dup"))
        assert "unknown signal" in one_line_error(runv("kill", "dup", "NOPE"))
    finally:
        runv("delete", "--force", "dup")
    assert_clean(runv)


def test_qemu_that_fails_to_start(runv, make_bundle, tmp_path):
    """QEMU's own complaint (here about a kernel it cannot load) is the error line."""
    bogus = tmp_path / "vmlinux"
    bogus.write_bytes(b"not a kernel\n" * 100)
    runv.env.update(RUNV_KERNEL=str(bogus), RUNV_TEMPLATES="0", RUNV_ACCEL="tcg")
    line = one_line_error(runv("run", "--bundle", make_bundle(["true"]), "q"))
    assert "qemu" in line and "kernel" in line, line
    assert_clean(runv)


def test_qemu_that_is_a_script(runv, make_bundle, tmp_path):
    """QEMU runs jailed, with its libraries and nothing else: a wrapper script
    (whose interpreter the jail lacks) is refused in one line."""
    fake = tmp_path / "qemu"
    fake.write_text("#!/bin/sh\nexec qemu-system-x86_64 \"$@\"\n")
    fake.chmod(0o755)
    runv.env.update(RUNV_QEMU=str(fake), RUNV_TEMPLATES="0")
    line = one_line_error(runv("run", "--bundle", make_bundle(["true"]), "q"))
    assert "not an ELF executable" in line, line
    assert_clean(runv)


def test_qemu_that_dies(runv, make_bundle):
    assert runv("run", "-d", "--bundle", make_bundle(["sleep", "300"]), "qd", detached=True).returncode == 0
    state_file = os.path.join(runv.root, "qd", "state.json")
    qemu_pid = json.load(open(state_file))["qemu_pid"]
    os.kill(qemu_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while runv.state("qd")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runv.state("qd")["status"] == "stopped"
    assert runv("delete", "qd").returncode == 0
    assert_clean(runv)


def test_unsafe_mount_destination(runv, make_bundle):
    def edit(config):
        config["mounts"].append({"destination": "/../../etc", "type": "tmpfs", "source": "tmpfs"})
    line = one_line_error(runv("run", "--bundle", make_bundle(["true"], config_edit=edit), "m"))
    assert "destination" in line
    assert_clean(runv)


# ---- bad input from the host side: one line, and the running container is untouched ----

import glob  # noqa: E402
import random  # noqa: E402

import pytest  # noqa: E402

from runv.agent.protocol import MAX_PAYLOAD  # noqa: E402
from runv.oci.default_spec import default_config  # noqa: E402

CGROUP_ROOT = "/sys/fs/cgroup"


@pytest.fixture
def box(runv, make_bundle):
    """A running container whose init sleeps; deleted at the end."""
    cid = f"box{os.getpid()}"  # cgroups are host-wide: an id no other test run uses
    assert runv("run", "-d", "--bundle", make_bundle(["sleep", "300"]), cid, detached=True).returncode == 0
    yield cid
    runv("delete", "--force", cid)


def assert_still_running(runv, cid):
    assert runv.state(cid)["status"] == "running"
    r = runv("exec", cid, "echo", "alive")
    assert (r.returncode, r.stdout) == (0, b"alive\n"), r.stderr


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    from runv.host import proc

    deadline = time.monotonic() + 30
    while proc.start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc.start_time(pid) is None


def cgroup_dirs(name: str) -> list[str]:
    """The dirs of a cgroup path in every hierarchy of this host."""
    return [d for d in glob.glob(f"{CGROUP_ROOT}/*/{name.strip('/')}") if os.path.isdir(d)]


def test_bad_signals_do_not_reach_the_container(runv, box):
    for bad in ("4294967296", "4294967305", "0", "65", "NOPE", "SIG_DFL"):
        line = one_line_error(runv("kill", box, bad))
        assert "signal" in line
    assert_still_running(runv, box)


def test_bad_exec_processes_are_refused_before_the_shim(runv, box, tmp_path):
    bad_processes = [
        {"args": ["sh", 1], "cwd": "/"},
        {"args": ["sh"]},
        {"args": ["sh"], "cwd": "tmp"},
        {"args": [], "cwd": "/"},
        {"args": ["sh"], "cwd": "/", "user": {"uid": -1}},
        {"args": ["sh"], "cwd": "/", "user": {"uid": 2**32}},
        {"args": ["sh"], "cwd": "/", "env": ["X=a\u0000b"]},
        {"args": ["sh"], "cwd": "/", "rlimits": [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]},
        {"args": ["sh"], "cwd": "/", "capabilities": {"bounding": ["CAP_NOPE"]}},
        {"args": ["sh"], "cwd": "/", "env": ["X=" + "x" * MAX_PAYLOAD]},
        {"args": ["true"] * (MAX_PAYLOAD // 8), "cwd": "/"},
        [], "sh", None,
    ]
    path = tmp_path / "process.json"
    for process in bad_processes:
        path.write_text(json.dumps(process))
        one_line_error(runv("exec", "--process", str(path), box))
    path.write_text("{not json")
    assert "invalid JSON" in one_line_error(runv("exec", "--process", str(path), box))
    assert_still_running(runv, box)


def test_bad_exec_flags_are_refused(runv, box):
    assert "--user" in one_line_error(runv("exec", "--user", "root", box, "true"))
    assert "--user" in one_line_error(runv("exec", "--user", "1:99999999999", box, "true"))
    assert "--cwd" in one_line_error(runv("exec", "--cwd", "tmp", box, "true"))
    assert "over the limit" in one_line_error(runv("exec", box, "echo", "x" * (MAX_PAYLOAD + 1)))
    assert "over the limit" in one_line_error(runv("exec", "--env", "X=" + "x" * MAX_PAYLOAD, box, "true"))
    assert_still_running(runv, box)


def test_bad_ids_and_roots(runv, box, make_bundle):
    long_id = "x" * 300
    for cmd in (["state", long_id], ["kill", long_id], ["delete", long_id], ["exec", long_id, "true"],
                ["run", "--bundle", make_bundle(["true"]), long_id], ["state", "x" * 256]):
        assert "invalid container id" in one_line_error(runv(*cmd))
    for root in ("rel", "./state", ""):
        for cmd in (["state", box], ["kill", box, "KILL"], ["delete", "--force", box], ["list"]):
            assert "--root" in one_line_error(runv("--root", root, *cmd))
    assert_still_running(runv, box)


def test_an_id_of_255_characters_runs(runv, make_bundle):
    cid = f"{os.getpid()}".ljust(255, "y")
    r = runv("run", "--bundle", make_bundle(["true"]), cid)
    assert r.returncode == 0, r.stderr
    assert_clean(runv)
    assert cgroup_dirs(f"runv/{cid}") == []


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"id": "@", "pid": "1"}', b"\xff\xfe",
                                     b'{"id": "@", "status": 5}', b""])
def test_corrupt_state_is_one_line_and_delete_force_cleans_up(runv, box, content):
    state_file = os.path.join(runv.root, box, "state.json")
    good = open(state_file, "rb").read()
    content = content.replace(b"@", box.encode())
    qemu_pid = json.loads(good)["qemu_pid"]
    with open(state_file, "wb") as f:
        f.write(content)
    for cmd in (["state", box], ["kill", box], ["delete", box], ["exec", box, "true"], ["start", box],
                ["pause", box], ["ps", box]):
        assert f"container state of {box} is" in one_line_error(runv(*cmd))
    r = runv("list")
    assert r.returncode == 0 and box.encode() not in r.stdout.split(b"\n", 1)[1]
    assert r.stderr.decode().startswith(f"runv: warning: container state of {box} is")
    with open(state_file, "wb") as f:
        f.write(good)
    assert_still_running(runv, box)
    with open(state_file, "wb") as f:
        f.write(content)
    assert runv("delete", "--force", box).returncode == 0
    assert gone(qemu_pid)
    assert_clean(runv)
    assert cgroup_dirs(f"runv/{box}") == []


# ---- linux.resources and cgroupsPath ----

def resources_edit(**res):
    def edit(config):
        for key, value in res.items():
            config["linux"].setdefault("resources", {})[key] = value
    return edit


@pytest.mark.parametrize("edit,expected", [
    (resources_edit(memory={"swappiness": "x"}), "swappiness"),
    (resources_edit(memory={"limit": "1g"}), "memory.limit"),
    (resources_edit(memory={"limit": 2**64}), "memory.limit"),
    (resources_edit(cpu={"shares": -1}), "cpu.shares"),
    (resources_edit(cpu={"cpus": "0\n1"}), "cpu.cpus"),
    (resources_edit(pids={"limit": 2**70}), "pids.limit"),
    (resources_edit(blockIO={"weight": "heavy"}), "blockIO.weight"),
    (resources_edit(unified={"cgroup.procs": "1"}), "cgroup.procs"),
    (resources_edit(unified={"cgroup.subtree_control": "+memory"}), "cgroup.subtree_control"),
    (resources_edit(unified={"../../cgroup.procs": "1"}), "unified"),
    (lambda c: c["linux"].update(cgroupsPath="/../../x"), "cgroupsPath"),
    (lambda c: c["linux"].update(cgroupsPath="a/../../x"), "cgroupsPath"),
    (lambda c: c["linux"].update(cgroupsPath="/"), "cgroupsPath"),
    (lambda c: c["linux"].update(cgroupsPath=5), "cgroupsPath"),
])
def test_bad_resources_are_one_line_and_leave_no_cgroup(runv, make_bundle, edit, expected):
    cid = f"res{os.getpid()}"
    line = one_line_error(runv("run", "--bundle", make_bundle(["true"], config_edit=edit), cid))
    assert expected in line
    assert "internal error" not in line
    assert_clean(runv)
    assert cgroup_dirs(f"runv/{cid}") == []


@pytest.fixture
def host_cgroup():
    """A cgroup path of our own in every hierarchy, removed (with anything
    left in it) at the end."""
    name = f"runvtest-{os.getpid()}"
    made = []

    def make(*parts: str) -> str:
        for mount in sorted(glob.glob(f"{CGROUP_ROOT}/*/")):
            d = os.path.join(mount, name, *parts)
            if os.path.isfile(os.path.join(mount, "cgroup.procs")):
                os.makedirs(d, exist_ok=True)
                made.append(d)
                _init_cpuset(mount, os.path.relpath(d, mount))
        return "/" + "/".join((name, *parts))
    yield make
    for d in sorted({p for m in made for p in _walk_up(m, name)}, key=len, reverse=True):
        try:
            os.rmdir(d)
        except OSError:
            pass


def _init_cpuset(mount: str, rel: str) -> None:
    """A new cpuset cgroup holds no task until it has cpus and mems (as an engine sets them)."""
    d = mount
    for part in rel.split("/"):
        d = os.path.join(d, part)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            path = os.path.join(d, knob)
            if os.path.exists(path) and not open(path).read().strip():
                with open(path, "w") as f:
                    f.write(open(os.path.join(mount, knob)).read().strip())


def _walk_up(d: str, name: str):
    while os.path.basename(d) != name:
        yield d
        d = os.path.dirname(d)
    yield d
    for sub, _, _ in os.walk(d):
        yield sub


def test_a_cgroup_with_other_processes_is_refused(runv, make_bundle, host_cgroup):
    path = host_cgroup("busy")
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        with open(f"{CGROUP_ROOT}/memory{path}/cgroup.procs", "w") as f:
            f.write(str(sleeper.pid))
        limit_before = open(f"{CGROUP_ROOT}/memory{path}/memory.limit_in_bytes").read()
        edit = lambda c: c["linux"].update(cgroupsPath=path)  # noqa: E731
        edit_res = lambda c: (edit(c), resources_edit(memory={"limit": 2**27})(c))  # noqa: E731
        line = one_line_error(runv("run", "--bundle", make_bundle(["true"], config_edit=edit_res), "busy"))
        assert "not empty" in line
        assert sleeper.poll() is None
        assert open(f"{CGROUP_ROOT}/memory{path}/memory.limit_in_bytes").read() == limit_before
        assert str(sleeper.pid) in open(f"{CGROUP_ROOT}/memory{path}/cgroup.procs").read().split()
        assert cgroup_dirs(path) != []
    finally:
        sleeper.kill()
        sleeper.wait()
    assert_clean(runv)


def test_delete_removes_only_the_cgroups_runv_made(runv, make_bundle, host_cgroup):
    parent = host_cgroup()  # exists before: stays
    joined = host_cgroup("joined")  # exists before, empty: joined, and stays
    for cid, path in (("made", f"{parent}/new/leaf"), ("joined", joined)):
        edit = lambda c, p=path: c["linux"].update(cgroupsPath=p)  # noqa: E731
        r = runv("run", "--bundle", make_bundle(["true"], config_edit=edit), cid)
        assert r.returncode == 0, r.stderr
    assert cgroup_dirs(parent) and cgroup_dirs(joined)
    assert cgroup_dirs(f"{parent}/new") == []  # made by runv: gone with the container
    assert_clean(runv)


# ---- ~20 mutated config.json documents through the real `runv run` ----

HAND_PICKED = [
    ("linux.namespaces", [1]), ("hooks", []), ("hooks", {"prestart": "x"}), ("annotations", [1]),
    ("linux.devices", [{"path": "/dev/x", "type": "c", "major": -1, "minor": 0}]),
    ("process.user.uid", 2**40), ("mounts[0]", 5), ("process.rlimits", "x"), ("linux.seccomp", "x"),
    ("process.env", ["X=" + "x" * MAX_PAYLOAD]), ("linux.resources", []), ("linux", "x"),
]
BAD_VALUES = [None, "x", -1, 2**64, [], {}, [None], {"x": [1]}, 1.5, True, "a\u0000b", "../..", "/"]


def _places(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{prefix}.{k}" if prefix else k
            yield from _places(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield f"{prefix}[{i}]"
            yield from _places(v, f"{prefix}[{i}]")


def mutations(count: int, seed: int = 20240601):
    rng = random.Random(seed)
    base = default_config()
    base["linux"]["resources"]["memory"] = {"limit": 2**28, "swappiness": 10}
    base["linux"]["resources"]["pids"] = {"limit": 100}
    places = [p for p in _places(base) if not p.startswith("root")]
    return HAND_PICKED + [(rng.choice(places), rng.choice(BAD_VALUES)) for _ in range(count - len(HAND_PICKED))]


def _set(config, path, value):
    import re

    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    node = config
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value


def test_mutated_configs_through_runv_run(runv, make_bundle):
    for i, (path, value) in enumerate(mutations(20)):
        bundle = make_bundle(["true"], config_edit=lambda c, path=path, value=value: _set(c, path, value))
        cid = f"mut{i}-{os.getpid()}"
        r = runv("run", "--bundle", bundle, cid)
        if r.returncode != 0:
            line = one_line_error(r)
            assert "internal error" not in line, (path, value, line)
        assert_clean(runv)
        assert cgroup_dirs(f"runv/{cid}") == [], (path, value)


def test_an_empty_leftover_of_runvs_own_cgroup_goes_with_the_next_container(runv, make_bundle):
    cid = f"left{os.getpid()}"
    from runv.host.cgroups import _hierarchies

    for mount in {os.path.join(m, "runv") for c, m in _hierarchies().items() if c != "unified"}:
        if os.path.isdir(mount):  # made by the runs before
            os.makedirs(os.path.join(mount, cid), exist_ok=True)
            _init_cpuset(mount, cid)
    r = runv("run", "--bundle", make_bundle(["true"]), cid)
    assert r.returncode == 0, r.stderr
    assert cgroup_dirs(f"runv/{cid}") == []
