"""One VM per pod, through the runc CLI as containerd's CRI plugin drives it:
a pod's first container (annotated as the sandbox) boots the VM; a container
that joins its network namespace (and names it) is created in that VM."""
from __future__ import annotations

import json
import os
import time

import pytest

SANDBOX = {"io.kubernetes.cri.container-type": "sandbox"}


def _pod_config(config: dict) -> None:
    config["annotations"] = dict(SANDBOX)
    config["hostname"] = "pod-host"
    for ns in ("network", "ipc", "uts"):
        if not any(n["type"] == ns for n in config["linux"]["namespaces"]):
            config["linux"]["namespaces"].append({"type": ns})


def _member_config(sandbox_id: str, sandbox_pid: int, share_pid: bool = False):
    def edit(config: dict) -> None:
        config["root"]["readonly"] = False
        config["annotations"] = {"io.kubernetes.cri.container-type": "container",
                                 "io.kubernetes.cri.sandbox-id": sandbox_id}
        config.pop("hostname", None)
        kept = [n for n in config["linux"]["namespaces"] if n["type"] in ("mount", "pid")]
        if share_pid:
            kept = [n for n in kept if n["type"] != "pid"]
            kept.append({"type": "pid", "path": f"/proc/{sandbox_pid}/ns/pid"})
        config["linux"]["namespaces"] = kept + [
            {"type": t, "path": f"/proc/{sandbox_pid}/ns/{n}"}
            for t, n in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))]
    return edit


@pytest.fixture
def pod(runv, make_bundle):
    """A running pod sandbox ("pause": sleeps), deleted afterwards with its members."""
    bundle = make_bundle(["sleep", "3600"], config_edit=_pod_config)
    r = runv("run", "-d", "--bundle", bundle, "pause", detached=True)
    assert r.returncode == 0, r.stderr
    yield runv.state("pause")["pid"]
    for cid in [c["id"] for c in json.loads(runv("list", "--format", "json").stdout or b"[]")]:
        runv("delete", "--force", cid)


def qemu_children(pid: int) -> list[int]:
    out = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if b"(qemu-system-" in stat and int(stat.rsplit(b")", 1)[1].split()[1]) == pid:
            out.append(int(p))
    return out


def test_a_member_runs_in_the_pods_vm(runv, make_bundle, pod):
    bundle = make_bundle(["sh", "-c", "echo hello from $(hostname); cat /proc/1/comm; exit 3"],
                         config_edit=_member_config("pause", pod))
    r = runv("run", "--bundle", bundle, "app")
    assert r.stdout.decode() == "hello from pod-host\nsh\n", r.stderr
    assert r.returncode == 3
    bundle = make_bundle(["sleep", "3600"], config_edit=_member_config("pause", pod))
    assert runv("run", "-d", "--bundle", bundle, "app2", detached=True).returncode == 0
    assert qemu_children(runv.state("app2")["pid"]) == []  # no VM of its own
    assert len(qemu_children(pod)) == 1


def test_members_share_the_pods_localhost_and_keep_their_own_files(runv, make_bundle, pod):
    server = make_bundle(["sh", "-c", "mkdir -p /www && echo served > /www/index.html && "
                                      "exec httpd -f -p 8080 -h /www"],
                         config_edit=_member_config("pause", pod))
    r = runv("run", "-d", "--bundle", server, "server", detached=True)
    assert r.returncode == 0, r.stderr
    client = make_bundle(["sleep", "3600"], config_edit=_member_config("pause", pod))
    r = runv("run", "-d", "--bundle", client, "client", detached=True)
    assert r.returncode == 0, r.stderr
    r = runv("exec", "client", "sh", "-c",
             "for i in $(seq 100); do wget -qO- http://127.0.0.1:8080/ && exit 0; sleep 0.2; done; exit 1")
    assert (r.returncode, r.stdout) == (0, b"served\n"), r.stderr
    # each has its own root: the server's file is not in the client's
    r = runv("exec", "client", "ls", "/www")
    assert r.returncode != 0
    # each has its own pid namespace: its init is pid 1
    r = runv("exec", "client", "cat", "/proc/1/cmdline")
    assert r.stdout.split(b"\0")[0] == b"sleep"
    assert runv.state("client")["status"] == "running"
    assert [p for p in json.loads(runv("ps", "--format", "json", "client").stdout)]


def test_a_member_with_the_pods_pid_namespace_sees_the_pause_process(runv, make_bundle, pod):
    bundle = make_bundle(["sh", "-c", "cat /proc/1/comm"], config_edit=_member_config("pause", pod, share_pid=True))
    r = runv("run", "--bundle", bundle, "shared")
    assert (r.returncode, r.stdout) == (0, b"sleep\n"), r.stderr


def test_kill_delete_and_the_pods_end(runv, make_bundle, pod):
    bundle = make_bundle(["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                         config_edit=_member_config("pause", pod))
    r = runv("create", "--bundle", bundle, "m1", detached=True)
    assert r.returncode == 0, r.stderr
    assert runv.state("m1")["status"] == "created"
    assert runv("start", "m1").returncode == 0
    assert runv.state("m1")["status"] == "running"
    assert runv("kill", "m1", "TERM").returncode == 0
    deadline = time.monotonic() + 60
    while runv.state("m1")["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert runv("delete", "m1").returncode == 0
    # a second member, then the pod's end takes it along
    bundle = make_bundle(["sleep", "3600"], config_edit=_member_config("pause", pod))
    assert runv("run", "-d", "--bundle", bundle, "m2", detached=True).returncode == 0
    m2 = runv.state("m2")["pid"]
    assert runv("kill", "pause", "KILL").returncode == 0
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{m2}") and open(f"/proc/{m2}/stat").read().split()[2] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert runv.state("m2")["status"] == "stopped"


def pod_share_entries(runv) -> list[str]:
    """The pod share as QEMU sees it, in its jail: one directory per member."""
    qemu = qemu_children(runv.state("pause")["pid"])[0]
    return sorted(os.listdir(f"/proc/{qemu}/root/shares/pod"))


def wait_for(check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_member_killed_by_delete_force_goes_from_the_vm(runv, make_bundle, pod):
    bundle = make_bundle(["sleep", "3600"], config_edit=_member_config("pause", pod))
    assert runv("run", "-d", "--bundle", bundle, "gone", detached=True).returncode == 0
    assert len(pod_share_entries(runv)) == 1
    assert runv("delete", "--force", "gone").returncode == 0
    wait_for(lambda: pod_share_entries(runv) == [])
    # the pod goes on, and a new member of the same name can come
    assert runv("run", "-d", "--bundle", bundle, "gone", detached=True).returncode == 0
    r = runv("exec", "gone", "true")
    assert r.returncode == 0, r.stderr
    assert runv.state("pause")["status"] == "running"


def test_a_bad_member_is_one_line_and_leaves_nothing(runv, make_bundle, pod):
    bundle = make_bundle(["/no/such/binary"], config_edit=_member_config("pause", pod))
    r = runv("create", "--bundle", bundle, "bad", detached=True)
    assert r.returncode != 0
    assert r.stderr.decode().count("\n") == 1 and r.stderr.startswith(b"runv: "), r.stderr
    assert "bad" not in [c["id"] for c in json.loads(runv("list", "--format", "json").stdout or b"[]")]
    bundle = make_bundle(["true"], config_edit=_member_config("pause", pod))
    assert runv("run", "--bundle", bundle, "good").returncode == 0


def _privileged(config: dict) -> None:
    caps = config["process"].setdefault("capabilities", {})
    every = ["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE", "CAP_MKNOD", "CAP_SYS_CHROOT", "CAP_CHOWN", "CAP_FOWNER"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = sorted(set(caps.get(kind) or []) | set(every))
    config["linux"].pop("seccomp", None)
    config["linux"]["maskedPaths"] = []
    config["linux"]["readonlyPaths"] = []


def test_a_privileged_member_cannot_reach_the_host_through_the_pod_share(runv, make_bundle, pod, tmp_path):
    """The pod share holds each member's files alone. The agent holds its only
    9p channel; if a privileged member could mount it by hand, it would show
    the members' directories and nothing else of the host, and take no file."""
    other = make_bundle(["sleep", "3600"], config_edit=_member_config("pause", pod))
    (tmp_path / "host-secret.txt").write_text("host secret\n")
    assert runv("run", "-d", "--bundle", other, "other", detached=True).returncode == 0

    def edit(config: dict) -> None:
        _member_config("pause", pod)(config)
        _privileged(config)
    script = ("mkdir -p /mnt/pod; if mount -t 9p -o trans=virtio,version=9p2000.L pod /mnt/pod; then "
              "echo MOUNTED; ls /mnt/pod; find /mnt/pod -name 'host-secret*'; "
              "touch /mnt/pod/planted 2>/dev/null && echo PLANTED; mkdir /mnt/pod/99 2>/dev/null && echo MADE; "
              "umount /mnt/pod; fi; find / -xdev -name 'host-secret*'")
    r = runv("run", "--bundle", make_bundle(["sh", "-c", script], config_edit=edit), "hunter")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert "host-secret" not in out and "PLANTED" not in out and "MADE" not in out, out
    if "MOUNTED" in out:
        assert all(d.isdigit() for d in out.split("MOUNTED", 1)[1].split()), out


def test_a_request_naming_another_pods_container_is_refused(runv, make_bundle, pod):
    """Only a container's own light shim may ask the pod's shim to create it."""
    import socket as sk

    bundle = make_bundle(["sleep", "3600"], config_edit=_member_config("pause", pod))
    assert runv("run", "-d", "--bundle", bundle, "victim", detached=True).returncode == 0
    s = sk.socket(sk.AF_UNIX, sk.SOCK_STREAM)
    s.settimeout(30)
    s.connect(os.path.join(runv.root, "pause", "shim.sock"))
    s.sendall(json.dumps({"op": "create", "container": "victim", "stdio": []}).encode() + b"\n")
    reply = json.loads(s.makefile("rb").readline())
    assert "error" in reply and "not one of this pod's" in reply["error"], reply
    assert runv("exec", "victim", "true").returncode == 0


def test_the_pods_shim_killed_stops_its_members_and_delete_cleans_up(runv, make_bundle, pod):
    import signal

    bundle = make_bundle(["sleep", "3600"], config_edit=_member_config("pause", pod))
    assert runv("run", "-d", "--bundle", bundle, "orphan", detached=True).returncode == 0
    light = runv.state("orphan")["pid"]
    os.kill(pod, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while runv.state("orphan")["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert runv.state("pause")["status"] == "stopped"
    assert not os.path.exists(f"/proc/{light}") or open(f"/proc/{light}/stat").read().split()[2] == "Z"
    assert runv("delete", "orphan").returncode == 0
    assert runv("delete", "pause").returncode == 0


def test_the_pods_vm_grows_for_a_members_memory_limit(runv, make_bundle, pod):
    """The pod's VM boots small; a member with a 400 MiB limit gets the memory
    (the balloon gives it), and its own limit holds inside the guest."""
    MiB = 2**20

    def edit(config: dict) -> None:
        _member_config("pause", pod)(config)
        config["linux"]["resources"] = {"memory": {"limit": 400 * MiB}}
        config["mounts"].append({"destination": "/big", "type": "tmpfs", "source": "tmpfs",
                                 "options": ["size=600m"]})
    script = ("until [ $(awk '/MemTotal/ {print $2}' /proc/meminfo) -gt 450000 ]; do sleep 0.1; done; "
              "dd if=/dev/zero of=/big/f bs=1M count=300 2>/dev/null && du -m /big/f; "
              "cat /sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/memory.max")
    r = runv("run", "--bundle", make_bundle(["sh", "-c", script], config_edit=edit), "big", timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [b"300", b"/big/f", str(400 * MiB).encode()], r.stdout


def test_a_light_shim_killed_while_its_container_is_made(runv, make_bundle, pod, tmp_path):
    """SIGKILL of the light shim right after it asked for its container: create
    fails, delete --force cleans up, and the pod keeps nothing of it."""
    import signal
    import subprocess

    report = str(tmp_path / "paused")
    env = {**runv.env, "RUNV_TEST_PAUSE_AT": "member.sent", "RUNV_TEST_PAUSE_FILE": report}
    bundle = make_bundle(["sleep", "3600"], config_edit=_member_config("pause", pod))
    runv.env = env
    cli = runv.popen("create", "--bundle", bundle, "victim", stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: os.path.exists(report) and open(report).read().endswith("\n"))
    light = int(open(report).read().split()[0])
    wait_for(lambda: open(f"/proc/{light}/stat").read().rsplit(")", 1)[1].split()[0] == "T")
    os.kill(light, signal.SIGKILL)
    _, err = cli.communicate(timeout=120)
    assert cli.returncode != 0 and err.startswith(b"runv: "), err
    runv.env = {k: v for k, v in env.items() if not k.startswith("RUNV_TEST_")}
    runv("delete", "--force", "victim")
    assert "victim" not in runv("list").stdout.decode()
    wait_for(lambda: pod_share_entries(runv) == [])
    assert runv("exec", "pause", "true").returncode == 0


def test_update_a_member_and_pause_the_pod_not_a_member(runv, make_bundle, pod):
    bundle = make_bundle(["sleep", "3600"], config_edit=_member_config("pause", pod))
    assert runv("run", "-d", "--bundle", bundle, "limited", detached=True).returncode == 0
    r = runv("update", "--memory", "64m", "--pids-limit", "20", "limited")
    assert r.returncode == 0, r.stderr
    r = runv("exec", "limited", "sh", "-c", "d=/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup); "
                                            "cat $d/memory.max $d/pids.max")
    assert r.stdout.split() == [str(64 * 2**20).encode(), b"20"], (r.stdout, r.stderr)
    r = runv("pause", "limited")
    assert r.returncode != 0 and "pause the pod's container pause" in r.stderr.decode(), r.stderr
    assert r.stderr.decode().count("\n") == 1
    assert runv("pause", "pause").returncode == 0
    assert runv.state("limited")["status"] == "running"  # the member's own status is its own
    assert runv("resume", "pause").returncode == 0
    assert runv("exec", "limited", "true").returncode == 0


def test_events_stats_of_a_member(runv, make_bundle, pod):
    bundle = make_bundle(["sleep", "3600"], config_edit=_member_config("pause", pod))
    assert runv("run", "-d", "--bundle", bundle, "counted", detached=True).returncode == 0
    r = runv("events", "--stats", "counted")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)["data"]
    assert data["pids"]["current"] == 1 and data["memory"]["usage"]["usage"] > 0, data


def test_a_member_with_a_terminal(runv, make_bundle, pod, tmp_path):
    """`tty: true` in a pod: the pty from --console-socket is the member's terminal."""
    import socket
    import subprocess

    bundle = make_bundle(["sh", "-c", "tty; read line; echo got $line; exit 6"], terminal=True,
                         config_edit=_member_config("pause", pod))
    path = str(tmp_path / "console.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        create = runv.popen("create", "--bundle", bundle, "--console-socket", path, "tty2",
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        conn, _ = server.accept()
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        conn.close()
    master = fds[0]
    out, err = create.communicate(timeout=120)  # create's own stdio closes
    assert create.returncode == 0, err
    assert runv("start", "tty2").returncode == 0
    os.write(master, b"hello\n")
    data = b""
    deadline = time.monotonic() + 60
    while b"got hello" not in data and time.monotonic() < deadline:
        try:
            data += os.read(master, 4096)
        except OSError:
            break
    os.close(master)
    assert b"/dev/pts/0" in data and b"got hello" in data, data
    wait_for(lambda: runv.state("tty2")["status"] == "stopped")
    assert runv.state("tty2").get("status") == "stopped"


def test_a_member_without_a_limit_that_eats_the_guest_is_oom_killed(runv, make_bundle, pod):
    """Without a limit of its own, a member that fills the guest's memory meets the
    pod's cap in the guest (an OOM kill, 137) instead of starving the whole VM."""
    eat = make_bundle(["sh", "-c", "a=x; while :; do a=$a$a; done"], config_edit=_member_config("pause", pod))
    look = make_bundle(["sleep", "3600"], config_edit=_member_config("pause", pod))
    assert runv("run", "-d", "--bundle", look, "look", detached=True).returncode == 0
    r = runv("exec", "look", "sh", "-c", "cat /sys/fs/cgroup/pod/memory.max; "
                                         "awk '/MemTotal/ {print $2 * 1024}' /proc/meminfo")
    cap, total = (int(v) for v in r.stdout.split())
    assert 0 < cap < total, (cap, total)  # the members together, below what the guest has
    r = runv("run", "--bundle", eat, "eater", timeout=600)
    assert r.returncode == 137, r.stderr
    assert runv("exec", "pause", "true").returncode == 0  # the pod's VM lives on


def _joins_network_of(pid: int):
    """A container as `docker run --network container:<id>` makes it: no annotations,
    the network namespace named by the other container's pid, its own others."""
    def edit(config: dict) -> None:
        config["root"]["readonly"] = False
        config.pop("annotations", None)
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
        config["linux"]["namespaces"].append({"type": "network", "path": f"/proc/{pid}/ns/net"})
    return edit


@pytest.fixture
def plain(runv, make_bundle):
    """A running container with a network namespace of its own and no pod
    annotations (docker's, Podman's infra container), deleted afterwards with its members."""
    def writable(config: dict) -> None:
        config["root"]["readonly"] = False
    bundle = make_bundle(["sh", "-c", "mkdir -p /www && echo served > /www/index.html && "
                                      "exec httpd -f -p 8080 -h /www"], config_edit=writable)
    r = runv("run", "-d", "--bundle", bundle, "first", detached=True)
    assert r.returncode == 0, r.stderr
    yield runv.state("first")["pid"]
    for cid in [c["id"] for c in json.loads(runv("list", "--format", "json").stdout or b"[]")]:
        runv("delete", "--force", cid)


FETCH = "for i in $(seq 100); do wget -qO- http://127.0.0.1:8080/ && exit 0; sleep 0.2; done; exit 1"


def test_any_container_with_a_network_namespace_of_its_own_takes_those_that_join_it(runv, make_bundle, plain):
    """`docker run --network container:first`: no annotation names a pod, the namespace does."""
    bundle = make_bundle(["sh", "-c", FETCH], config_edit=_joins_network_of(plain))
    r = runv("run", "--bundle", bundle, "second")
    assert (r.returncode, r.stdout) == (0, b"served\n"), r.stderr
    bundle = make_bundle(["sleep", "3600"], config_edit=_joins_network_of(plain))
    assert runv("run", "-d", "--bundle", bundle, "third", detached=True).returncode == 0
    assert qemu_children(runv.state("third")["pid"]) == []
    assert len(qemu_children(plain)) == 1


def test_a_container_joining_a_members_namespace_by_its_pid_joins_the_pod(runv, make_bundle, plain):
    """A member's pid (its light shim) is in the pod's network namespace, as a runc
    container's would be; before, it was in the host's, and a container naming it
    was refused (or, with a runtime that allowed it, on the host's network)."""
    bundle = make_bundle(["sleep", "3600"], config_edit=_joins_network_of(plain))
    assert runv("run", "-d", "--bundle", bundle, "member", detached=True).returncode == 0
    member = runv.state("member")["pid"]
    assert os.stat(f"/proc/{member}/ns/net").st_ino == os.stat(f"/proc/{plain}/ns/net").st_ino
    bundle = make_bundle(["sh", "-c", FETCH], config_edit=_joins_network_of(member))
    r = runv("run", "--bundle", bundle, "chained")
    assert (r.returncode, r.stdout) == (0, b"served\n"), r.stderr
    assert len(qemu_children(plain)) == 1
