"""Podman runs containers through runv: `podman --runtime runv ...`.

Podman 4.3 (Debian 12) is rootful here, with conmon watching each container
and netavark's default network (the `podman0` bridge); see podman_engine.py
for the private store and config, and docs/engines.md for the setup. A pod
(`podman pod`) is one VM: its infra container boots it, and the pod's other
containers, which join the infra container's network namespace, are created
in it (runv.member).
"""
from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request

import pytest
from daemons import READY_LOOP, RUNTIME, run_in_pty, vms_of, wait_exited, wait_logs
from podman_engine import IMAGE, LABEL

pytestmark = pytest.mark.engines

# ---------------------------------------------------------------- podman run

def test_run_echo(podman):
    r = podman("--runtime", podman.runtime_name, "run", "--rm", IMAGE, "echo", "hi")
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr


def test_runtime_given_by_path(podman):
    """`podman --runtime /path/to/runv`, with no containers.conf entry for it."""
    r = podman("--runtime", podman.runtime_path, "run", "--rm", IMAGE, "uname", "-r")
    assert r.returncode == 0, r.stderr
    assert (r.stdout.strip() != os.uname().release) == (RUNTIME == "runv"), r.stdout


def test_exit_code_and_separate_streams(podman):
    r = podman.run("--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7, r.stderr
    assert r.stdout == "out\n"
    assert "err\n" in r.stderr and "out" not in r.stderr


def test_command_not_found_or_not_executable(podman):
    """The exit codes podman gives with runc: 127 and 126."""
    r = podman.run("--rm", IMAGE, "/nonexistent")
    assert r.returncode == 127, r.stderr
    r = podman.run("--rm", IMAGE, "/etc/passwd")
    assert r.returncode == 126, r.stderr


@pytest.mark.skipif(RUNTIME != "runv", reason="runc cannot raise these limits here (see podman_engine.py)")
def test_podmans_rlimits_apply_in_the_guest(podman):
    """Rootful podman asks for nofile 1048576 and nproc 32768. runc fails to set
    them on this host (`error setting rlimit type 7: operation not permitted`:
    no CAP_SYS_RESOURCE to raise a hard limit); runv's agent sets them in the guest."""
    r = podman.run("--rm", IMAGE, "sh", "-c", "ulimit -Hn; ulimit -Sn; ulimit -Hu")
    assert (r.returncode, r.stdout) == (0, "1048576\n1048576\n32768\n"), r.stderr


def test_stdin_with_i(podman):
    data = "".join(f"line {i}\n" for i in range(20000))  # ~200 KB: more than one pipe buffer
    r = podman.run("--rm", "-i", IMAGE, "sh", "-c", "cat; echo done", input=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data + "done\n"


def test_tty_with_t(podman):
    rc, out = run_in_pty(podman.run_argv("--rm", "-t", IMAGE, "sh", "-c", "tty; echo tty-ok"),
                         env=podman.env())
    assert rc == 0, out
    assert b"/dev/pts/" in out and b"tty-ok" in out, out


def test_interactive_tty_with_it(podman):
    rc, out = run_in_pty(podman.run_argv("--rm", "-it", IMAGE, "sh"), env=podman.env(),
                         wait_for=b"# ", input_after=b"echo $((6*7)); exit 3\n")
    assert rc == 3, out
    assert b"42" in out, out


def test_rm_leaves_nothing_behind(podman):
    r = podman.run("--rm", IMAGE, "true")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 20
    while True:
        left = podman.leftovers([])
        if podman.container_ids():
            left.append("podman still lists it")
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == []


# ---------------------------------------------------------------- a running container

def test_detached_logs_exec_stop_rm(podman):
    cid = podman.run_d(IMAGE, "sh", "-c", "echo started; echo to-stderr >&2; " + READY_LOOP)
    wait_logs(podman, cid, "ready")
    logs = podman("logs", cid)
    assert "started\n" in logs.stdout and "to-stderr\n" in logs.stderr, logs
    assert podman.inspect(cid, "{{.State.Status}}") == "running"

    r = podman("exec", cid, "sh", "-c", "echo exec-ok; exit 4")
    assert (r.returncode, r.stdout) == (4, "exec-ok\n"), r.stderr
    r = podman("exec", "-i", cid, "tr", "a-z", "A-Z", input="shout\n")
    assert (r.returncode, r.stdout) == (0, "SHOUT\n"), r.stderr
    # The exec runs in the container: it sees the init's files.
    podman("exec", cid, "sh", "-c", "echo mark > /tmp/mark", check=True)
    assert podman("exec", cid, "cat", "/tmp/mark", check=True).stdout == "mark\n"

    r = podman("stop", "-t", "2", cid)
    assert r.returncode == 0, r.stderr
    assert wait_exited(podman, cid) == 137  # sh as pid 1 ignores TERM: KILL after 2 s
    r = podman("rm", cid)
    assert r.returncode == 0, r.stderr
    assert cid not in podman.container_ids()


def test_exec_with_tty(podman):
    cid = podman.run_d(IMAGE, "sh", "-c", READY_LOOP)
    wait_logs(podman, cid, "ready")
    rc, out = run_in_pty(podman.argv("exec", "-t", cid, "sh", "-c", "tty; echo exec-tty-ok"),
                         env=podman.env())
    assert rc == 0, out
    assert b"/dev/pts/" in out and b"exec-tty-ok" in out, out
    rc, out = run_in_pty(podman.argv("exec", "-it", cid, "sh"), env=podman.env(),
                         wait_for=b"# ", input_after=b"echo $((5*5)); exit 2\n")
    assert rc == 2 and b"25" in out, out


def test_kill_with_a_signal(podman):
    cid = podman.run_d(IMAGE, "sh", "-c", 'trap "echo got-usr1" USR1; ' + READY_LOOP)
    wait_logs(podman, cid, "ready")
    r = podman("kill", "-s", "USR1", cid)
    assert r.returncode == 0, r.stderr
    wait_logs(podman, cid, "got-usr1", timeout=30)
    assert podman.inspect(cid, "{{.State.Status}}") == "running"
    r = podman("kill", cid)  # KILL
    assert r.returncode == 0, r.stderr
    assert wait_exited(podman, cid) == 137


def test_stop_sends_term(podman):
    cid = podman.run_d(IMAGE, "sh", "-c", 'trap "echo got-term; exit 3" TERM; ' + READY_LOOP)
    wait_logs(podman, cid, "ready")
    r = podman("stop", "-t", "10", cid)
    assert r.returncode == 0, r.stderr
    assert wait_exited(podman, cid) == 3
    assert "got-term" in podman("logs", cid).stdout


def test_pause_unpause(podman):
    cid = podman.run_d(IMAGE, "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done")
    wait_logs(podman, cid, "3\n")
    assert podman("pause", cid).returncode == 0
    assert podman.inspect(cid, "{{.State.Status}}") == "paused"
    time.sleep(0.5)  # let what was on its way land
    before = podman("logs", cid).stdout
    time.sleep(2)
    assert podman("logs", cid).stdout == before, "the container kept running while paused"

    assert podman("unpause", cid).returncode == 0
    assert podman.inspect(cid, "{{.State.Status}}") == "running"
    deadline = time.monotonic() + 30
    while podman("logs", cid).stdout == before:
        assert time.monotonic() < deadline, "the container did not go on after unpause"
        time.sleep(0.2)


# ---------------------------------------------------------------- network

def test_default_network(podman):
    """The guest NIC has the address and MAC address that netavark gave the
    container on podman's default network, and two containers reach each other."""
    a = podman.run_d(IMAGE, "sh", "-c", READY_LOOP)
    b = podman.run_d(IMAGE, "sh", "-c", READY_LOOP)
    wait_logs(podman, a, "ready")
    wait_logs(podman, b, "ready")
    ip_a = podman.inspect(a, "{{.NetworkSettings.IPAddress}}")
    ip_b = podman.inspect(b, "{{.NetworkSettings.IPAddress}}")
    assert ip_a.startswith("10.88.") and ip_b.startswith("10.88.") and ip_a != ip_b, (ip_a, ip_b)

    mac_a = podman.inspect(a, "{{.NetworkSettings.MacAddress}}")
    r = podman("exec", a, "sh", "-c", "ip -o -4 addr show eth0; cat /sys/class/net/eth0/address")
    assert r.returncode == 0, r.stderr
    assert f"inet {ip_a}/" in r.stdout and mac_a in r.stdout, r.stdout

    for src, dst in ((b, ip_a), (a, ip_b)):
        r = podman("exec", src, "ping", "-c", "3", "-W", "5", dst, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert " 0% packet loss" in r.stdout, r.stdout


def fetch(url: str, timeout: float = 60) -> bytes:
    """GET url, retrying while the server in the container comes up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read()
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url}: {e}") from None
            time.sleep(0.3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_published_port(podman, tmp_path):
    """-p: netavark's DNAT rules send a host port to the container's address,
    which the guest owns; fetched over loopback and at the container's address."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from a runv container\n")
    port = free_port()
    cid = podman.run_d("-p", f"{port}:80", "-v", f"{www}:/www:ro", IMAGE,
                       "httpd", "-f", "-p", "80", "-h", "/www")
    assert fetch(f"http://127.0.0.1:{port}/index.html") == b"hello from a runv container\n"
    ip = podman.inspect(cid, "{{.NetworkSettings.IPAddress}}")
    assert fetch(f"http://{ip}:80/index.html") == b"hello from a runv container\n"
    assert podman("rm", "-f", "-t", "0", cid).returncode == 0


# ---------------------------------------------------------------- volumes

def test_bind_mounts(podman, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    single = tmp_path / "single.conf"
    single.write_text("one file\n")
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "keep.txt").write_text("read only\n")
    ro_file = tmp_path / "ro.conf"
    ro_file.write_text("read only file\n")
    script = (
        "cat /data/in.txt; echo from the container > /data/out.txt; "
        "cat /etc/single.conf; echo appended >> /etc/single.conf; "
        "cat /ro/keep.txt; if echo x > /ro/new.txt; then echo ro-WRITABLE; else echo ro-refused; fi; "
        "cat /etc/ro.conf; if echo x >> /etc/ro.conf; then echo rofile-WRITABLE; else echo rofile-refused; fi"
    )
    r = podman.run("--rm", "-v", f"{data}:/data", "-v", f"{single}:/etc/single.conf",
                   "-v", f"{ro}:/ro:ro", "-v", f"{ro_file}:/etc/ro.conf:ro", IMAGE, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("from the host\none file\nread only\nro-refused\n"
                        "read only file\nrofile-refused\n"), r.stdout + r.stderr
    assert "Read-only file system" in r.stderr
    assert (data / "out.txt").read_text() == "from the container\n"
    assert single.read_text() == "one file\nappended\n"
    assert sorted(os.listdir(ro)) == ["keep.txt"]
    assert ro_file.read_text() == "read only file\n"


# ---------------------------------------------------------------- pods

SERVE_LOCALHOST = ("mkdir -p /www && echo served from the pod > /www/index.html && "
                   "exec httpd -f -p 127.0.0.1:8080 -h /www")
FETCH_LOCALHOST = ("for i in $(seq 150); do wget -qO- http://127.0.0.1:8080/ && exit 0; sleep 0.2; done; "
                   "exit 1")


def pod_pids(podman, pod: str) -> tuple[int, list[int]]:
    """The host pids of the pod's infra container and of its other running containers."""
    infra = podman("pod", "inspect", "-f", "{{.InfraContainerID}}", pod, check=True).stdout.strip()
    others = podman("ps", "-q", "--no-trunc", "--filter", f"pod={pod}", check=True).stdout.split()
    pid = int(podman.inspect(infra, "{{.State.Pid}}"))
    return pid, [int(podman.inspect(c, "{{.State.Pid}}")) for c in others if c != infra]


def test_pod_containers_share_localhost_in_one_vm(podman):
    """`podman pod create`, a server on the pod's 127.0.0.1 and a client in
    another container of the pod: the infra container's VM holds them all."""
    pod = podman("pod", "create", "--label", LABEL, "--name", "runv-pod-localhost", check=True).stdout.strip()
    server = podman.run_d("--pod", pod, IMAGE, "sh", "-c", SERVE_LOCALHOST)
    client = podman.run_d("--pod", pod, IMAGE, "sh", "-c", READY_LOOP)
    wait_logs(podman, client, "ready")
    r = podman("exec", client, "sh", "-c", FETCH_LOCALHOST, timeout=120)
    assert (r.returncode, r.stdout) == (0, "served from the pod\n"), r.stderr
    # The pod's UTS namespace: its name is every container's hostname.
    assert podman("exec", server, "hostname", check=True).stdout == "runv-pod-localhost\n"
    # Each container still has its own root: the server's files are not the client's.
    assert podman("exec", client, "ls", "/www/index.html").returncode != 0
    # A container of the pod that runs in the foreground: its output and exit code.
    r = podman.run("--rm", "--pod", pod, IMAGE, "sh", "-c", "wget -qO- http://127.0.0.1:8080/; exit 3",
                   timeout=120)
    assert (r.returncode, r.stdout) == (3, "served from the pod\n"), r.stderr
    if RUNTIME == "runv":
        infra_pid, pids = pod_pids(podman, pod)
        assert len(pids) == 2
        assert len(vms_of(infra_pid)) == 1, "the infra container boots the pod's VM"
        assert [vms_of(p) for p in pids] == [[], []], "the pod's other containers have no VM of their own"


def test_pod_stop_and_rm_leave_nothing(podman):
    pod = podman("pod", "create", "--label", LABEL, check=True).stdout.strip()
    first = podman.run_d("--pod", pod, IMAGE, "sh", "-c", 'trap "exit 0" TERM; ' + READY_LOOP)
    second = podman.run_d("--pod", pod, IMAGE, "sleep", "3600")
    wait_logs(podman, first, "ready")
    infra_pid, _ = pod_pids(podman, pod)
    vms = vms_of(infra_pid) if RUNTIME == "runv" else []
    ids = podman("ps", "-aq", "--no-trunc", "--filter", f"pod={pod}", check=True).stdout.split()
    assert len(ids) == 3

    r = podman("pod", "stop", "-t", "2", pod, timeout=120)
    assert r.returncode == 0, r.stderr
    for cid in (first, second):
        assert podman.inspect(cid, "{{.State.Status}}") == "exited"
    r = podman("pod", "rm", pod, timeout=120)
    assert r.returncode == 0, r.stderr
    assert podman("pod", "exists", pod).returncode == 1
    deadline = time.monotonic() + 20
    while True:
        left = podman.leftovers(ids)
        left += [f"the pod's VM, pid {v}" for v in vms if os.path.exists(f"/proc/{v}")]
        left += [f"podman still lists {c}" for c in ids if c in podman.container_ids()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == []
