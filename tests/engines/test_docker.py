"""Docker runs containers through runv: `docker run --runtime runv ...`.

dockerd 20.10 drives runv through containerd's runc v2 shim, exactly as it
drives runc; see conftest.py for the daemons and docs/engines.md for the setup.
A container started with `--network container:<other>` is created in the
other one's VM (runv.member), so they share localhost.
"""
from __future__ import annotations

import os
import time
import urllib.error
import urllib.request

import daemons
import pytest
from daemons import IMAGE, READY_LOOP, RUNTIME, run_in_pty, vms_of, wait_exited, wait_logs

pytestmark = pytest.mark.engines

# ---------------------------------------------------------------- docker run

def test_run_echo(docker):
    r = docker.run("--rm", IMAGE, "echo", "hi")
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr


def test_runs_in_a_vm(docker):
    """The container sees a kernel of its own (runv's guest), not the host's."""
    r = docker.run("--rm", IMAGE, "uname", "-r")
    assert r.returncode == 0, r.stderr
    in_vm = r.stdout.strip() != os.uname().release
    assert in_vm == (RUNTIME == "runv"), (r.stdout, os.uname().release)


def test_exit_code_and_separate_streams(docker):
    r = docker.run("--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7, r.stderr
    assert r.stdout == "out\n"
    assert "err\n" in r.stderr and "out" not in r.stderr


def test_stdin_with_i(docker):
    data = "".join(f"line {i}\n" for i in range(20000))  # ~200 KB: more than one pipe buffer
    r = docker.run("--rm", "-i", IMAGE, "sh", "-c", "cat; echo done", input=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data + "done\n"


def test_tty_with_t(docker):
    argv, cidfile = docker.run_argv("--rm", "-t", IMAGE, "sh", "-c", "tty; echo tty-ok")
    rc, out = run_in_pty(argv, env=docker.engines.env())
    docker.record(cidfile)
    assert rc == 0, out
    assert b"/dev/pts/" in out and b"tty-ok" in out, out


def test_interactive_tty_with_it(docker):
    argv, cidfile = docker.run_argv("--rm", "-it", IMAGE, "sh")
    rc, out = run_in_pty(argv, env=docker.engines.env(), wait_for=b"# ",
                         input_after=b"echo $((6*7)); exit 3\n")
    docker.record(cidfile)
    assert rc == 3, out
    assert b"42" in out, out


def test_rm_leaves_nothing_behind(docker):
    r = docker.run("--rm", IMAGE, "true")
    assert r.returncode == 0, r.stderr
    cid = r.cid
    assert len(cid) == 64, cid
    deadline = time.monotonic() + 20
    while True:
        left = daemons.leftovers([cid])
        if docker("ps", "-aq", "--no-trunc", "--filter", f"id={cid}").stdout.strip():
            left.append("docker still lists it")
        for path in (os.path.join(daemons.DOCKER_RUNTIME_ROOT, cid),
                     f"/run/containerd/io.containerd.runtime.v2.task/moby/{cid}",
                     os.path.join(daemons.RUNV_DEFAULT_ROOT, cid)):
            if os.path.exists(path):
                left.append(path)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == []


# ---------------------------------------------------------------- a running container

def test_detached_logs_exec_top(docker):
    cid = docker.run_d(IMAGE, "sh", "-c", "echo started; echo to-stderr >&2; " + READY_LOOP)
    wait_logs(docker, cid, "ready")
    logs = docker("logs", cid)
    assert "started\n" in logs.stdout and "to-stderr\n" in logs.stderr, logs

    r = docker("exec", cid, "sh", "-c", "echo exec-ok; exit 4")
    assert (r.returncode, r.stdout) == (4, "exec-ok\n"), r.stderr
    r = docker("exec", "-i", cid, "tr", "a-z", "A-Z", input="shout\n")
    assert (r.returncode, r.stdout) == (0, "SHOUT\n"), r.stderr
    # The exec runs in the container: it sees the init's files.
    docker("exec", cid, "sh", "-c", "echo mark > /tmp/mark", check=True)
    assert docker("exec", cid, "cat", "/tmp/mark", check=True).stdout == "mark\n"

    # docker top shows host processes by the pids the runtime's `ps` reports: for a
    # VM runtime those stand for the VM, so ask only that there are some.
    r = docker("top", cid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["UID", "PID"] and len(lines) >= 2, r.stdout

    assert docker("rm", "-f", cid).returncode == 0


def test_exec_with_tty(docker):
    cid = docker.run_d(IMAGE, "sh", "-c", READY_LOOP)
    wait_logs(docker, cid, "ready")
    rc, out = run_in_pty(docker.argv("exec", "-t", cid, "sh", "-c", "tty; echo exec-tty-ok"),
                         env=docker.engines.env())
    assert rc == 0, out
    assert b"/dev/pts/" in out and b"exec-tty-ok" in out, out
    rc, out = run_in_pty(docker.argv("exec", "-it", cid, "sh"), env=docker.engines.env(),
                         wait_for=b"# ", input_after=b"echo $((5*5)); exit 2\n")
    assert rc == 2 and b"25" in out, out


def test_pause_unpause(docker):
    cid = docker.run_d(IMAGE, "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done")
    wait_logs(docker, cid, "3\n")
    assert docker("pause", cid).returncode == 0
    assert docker.inspect(cid, "{{.State.Status}}") == "paused"
    time.sleep(0.5)  # let what was on its way land
    before = docker("logs", cid).stdout
    time.sleep(2)
    assert docker("logs", cid).stdout == before, "the container kept running while paused"

    assert docker("unpause", cid).returncode == 0
    assert docker.inspect(cid, "{{.State.Status}}") == "running"
    deadline = time.monotonic() + 30
    while docker("logs", cid).stdout == before:
        assert time.monotonic() < deadline, "the container did not go on after unpause"
        time.sleep(0.2)
    assert docker("rm", "-f", cid).returncode == 0


# The container's own cgroup v2 directory, with or without a cgroup namespace.
OWN_CGROUP = 'd=/sys/fs/cgroup$(sed -n "s/^0:://p" /proc/self/cgroup); '


def test_update_changes_limits_live(docker):
    """docker update: the running container sees its new limits in its cgroup."""
    cid = docker.run_d("--memory", "128m", "--pids-limit", "50", IMAGE, "sh", "-c", READY_LOOP)
    wait_logs(docker, cid, "ready")
    r = docker("update", "--memory", "300m", "--memory-swap", "600m", "--cpus", "0.5",
               "--pids-limit", "30", cid)
    assert r.returncode == 0, r.stderr
    r = docker("exec", cid, "sh", "-c", OWN_CGROUP + "cat $d/memory.max $d/pids.max $d/cpu.max")
    assert r.returncode == 0, r.stderr
    if RUNTIME == "runv":  # runc on this host's cgroup v1 has other file names
        # The VM booted for 128 MiB has twice that and the guest's own behind its
        # balloon: 300 MiB is more than it can give beside the guest's own, so the
        # guest cgroup is capped below what the guest has (docs/security.md, Faults).
        from runv.oci import resources

        ram = 2 * (128 + resources.GUEST_OVERHEAD_MB)
        cap = min(300, ram - resources.memmap_mb(ram) - resources.GUEST_OVERHEAD_MB) * 2**20
        assert r.stdout.split() == [str(cap), "30", "50000", "100000"], r.stdout
    assert docker.inspect(cid, "{{.HostConfig.Memory}}") == str(300 * 2**20)
    assert docker.inspect(cid, "{{.State.Status}}") == "running"
    # A CPU this host lacks: refused (by dockerd or runv), and the container runs on.
    # (A negative --cpu-shares is no error: docker passes it on as a huge uint64,
    # which the kernel clamps, with runc as with runv.)
    r = docker("update", "--cpuset-cpus", "1023", cid)
    assert r.returncode != 0
    assert docker.inspect(cid, "{{.State.Status}}") == "running"
    assert docker("rm", "-f", cid).returncode == 0


def test_kill_with_a_signal(docker):
    cid = docker.run_d(IMAGE, "sh", "-c", 'trap "echo got-usr1" USR1; ' + READY_LOOP)
    wait_logs(docker, cid, "ready")
    r = docker("kill", "-s", "USR1", cid)
    assert r.returncode == 0, r.stderr
    wait_logs(docker, cid, "got-usr1", timeout=30)
    assert docker.inspect(cid, "{{.State.Status}}") == "running"
    r = docker("kill", cid)  # KILL
    assert r.returncode == 0, r.stderr
    assert wait_exited(docker, cid) == 137


def test_stop_sends_term(docker):
    cid = docker.run_d(IMAGE, "sh", "-c", 'trap "echo got-term; exit 3" TERM; ' + READY_LOOP)
    wait_logs(docker, cid, "ready")
    r = docker("stop", "-t", "2", cid)
    assert r.returncode == 0, r.stderr
    assert wait_exited(docker, cid) == 3
    assert "got-term" in docker("logs", cid).stdout


def test_stop_kills_after_the_timeout(docker):
    cid = docker.run_d(IMAGE, "sh", "-c", 'trap "echo ignored-term" TERM; ' + READY_LOOP)
    wait_logs(docker, cid, "ready")
    t0 = time.monotonic()
    r = docker("stop", "-t", "2", cid)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert elapsed >= 2, f"stopped after {elapsed:.1f} s: KILL came before the timeout"
    assert wait_exited(docker, cid) == 137
    assert "ignored-term" in docker("logs", cid).stdout


# ---------------------------------------------------------------- network

def test_two_containers_ping_each_other(docker):
    a = docker.run_d(IMAGE, "sh", "-c", READY_LOOP)
    b = docker.run_d(IMAGE, "sh", "-c", READY_LOOP)
    wait_logs(docker, a, "ready")
    wait_logs(docker, b, "ready")
    ip_a = docker.inspect(a, "{{.NetworkSettings.IPAddress}}")
    ip_b = docker.inspect(b, "{{.NetworkSettings.IPAddress}}")
    assert ip_a and ip_b and ip_a != ip_b

    # The guest NIC has the address and the MAC address docker gave the container.
    mac_a = docker.inspect(a, "{{.NetworkSettings.MacAddress}}")
    r = docker("exec", a, "sh", "-c", "ip -o -4 addr show eth0; cat /sys/class/net/eth0/address")
    assert r.returncode == 0, r.stderr
    assert f"inet {ip_a}/" in r.stdout and mac_a in r.stdout, r.stdout

    for src, dst in ((b, ip_a), (a, ip_b)):
        r = docker("exec", src, "ping", "-c", "3", "-W", "5", dst, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert " 0% packet loss" in r.stdout, r.stdout


def fetch(url: str, timeout: float = 60) -> bytes:
    """GET url, retrying while the server in the container comes up (docker-proxy
    accepts at once and drops the connection while nothing listens behind it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read()
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url}: {e}") from None
            time.sleep(0.3)


def test_published_port(docker, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from a runv container\n")
    cid = docker.run_d("-p", "8080:80", "-v", f"{www}:/www:ro", IMAGE,
                       "httpd", "-f", "-p", "80", "-h", "/www")
    assert fetch("http://127.0.0.1:8080/index.html") == b"hello from a runv container\n"
    assert docker("rm", "-f", cid).returncode == 0


SERVE_LOCALHOST = ("mkdir -p /www && echo served on localhost > /www/index.html && "
                   "exec httpd -f -p 127.0.0.1:8080 -h /www")
FETCH_LOCALHOST = ("for i in $(seq 150); do wget -qO- http://127.0.0.1:8080/ && exit 0; sleep 0.2; done; "
                   "exit 1")


def test_container_network_mode_shares_localhost_in_one_vm(docker):
    """`--network container:<first>`: the second container runs in the first
    one's VM and reaches its server on 127.0.0.1; so does a third that names
    the second (whose pid, like a runc container's, is in the shared namespace)."""
    first = docker.run_d(IMAGE, "sh", "-c", SERVE_LOCALHOST)
    second = docker.run_d("--network", f"container:{first}", IMAGE, "sh", "-c", READY_LOOP)
    wait_logs(docker, second, "ready")
    r = docker("exec", second, "sh", "-c", FETCH_LOCALHOST, timeout=120)
    assert (r.returncode, r.stdout) == (0, "served on localhost\n"), r.stderr
    # The first one's address is the second's too; their roots are their own.
    ip = docker.inspect(first, "{{.NetworkSettings.IPAddress}}")
    assert f"inet {ip}/" in docker("exec", second, "ip", "-o", "-4", "addr", check=True).stdout
    assert docker("exec", second, "ls", "/www/index.html").returncode != 0
    # A foreground container through the second one: output and exit code.
    r = docker.run("--rm", "--network", f"container:{second}", IMAGE, "sh", "-c",
                   "wget -qO- http://127.0.0.1:8080/; exit 3", timeout=120)
    assert (r.returncode, r.stdout) == (3, "served on localhost\n"), r.stderr
    if RUNTIME == "runv":
        assert len(vms_of(int(docker.inspect(first, "{{.State.Pid}}")))) == 1
        assert vms_of(int(docker.inspect(second, "{{.State.Pid}}"))) == []
    # The second one stops alone; the first one goes on serving.
    r = docker("stop", "-t", "2", second)
    assert r.returncode == 0, r.stderr
    assert wait_exited(docker, second) == 137  # sh as pid 1 ignores TERM
    r = docker.run("--rm", "--network", f"container:{first}", IMAGE, "wget", "-qO-", "http://127.0.0.1:8080/",
                   timeout=120)
    assert (r.returncode, r.stdout) == (0, "served on localhost\n"), r.stderr
    assert docker("rm", "-f", second, first).returncode == 0


def test_the_first_containers_end_ends_those_in_its_vm(docker):
    """With runc the second container keeps the namespace alive; with runv it
    runs in the first one's VM, which goes with the first container: docker sees
    it exit (killed), and nothing is left behind."""
    first = docker.run_d(IMAGE, "sh", "-c", READY_LOOP)
    second = docker.run_d("--network", f"container:{first}", IMAGE, "sh", "-c", READY_LOOP)
    wait_logs(docker, second, "ready")
    assert docker("kill", first).returncode == 0
    assert wait_exited(docker, first) == 137
    if RUNTIME == "runv":
        assert wait_exited(docker, second, timeout=60) != 0
    assert docker("rm", "-f", second, first).returncode == 0
    deadline = time.monotonic() + 20
    while (left := daemons.leftovers([first, second])) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []


# ---------------------------------------------------------------- volumes

def test_bind_mounts(docker, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    single = tmp_path / "single.conf"
    single.write_text("one file\n")
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "keep.txt").write_text("read only\n")
    script = (
        "cat /data/in.txt; echo from the container > /data/out.txt; "
        "cat /etc/single.conf; echo appended >> /etc/single.conf; "
        "cat /ro/keep.txt; if echo x > /ro/new.txt; then echo ro-WRITABLE; else echo ro-refused; fi"
    )
    r = docker.run("--rm", "-v", f"{data}:/data", "-v", f"{single}:/etc/single.conf",
                   "-v", f"{ro}:/ro:ro", IMAGE, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "from the host\none file\nread only\nro-refused\n", r.stdout + r.stderr
    assert "Read-only file system" in r.stderr
    assert (data / "out.txt").read_text() == "from the container\n"
    assert single.read_text() == "one file\nappended\n"
    assert sorted(os.listdir(ro)) == ["keep.txt"]
