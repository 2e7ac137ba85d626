"""containerd and dockerd, started by hand for the engine tests, with runv registered.

There is no systemd here, so the daemons are started as plain child processes:
their stdin is /dev/null, their output goes to log files in a work dir, every fd
above 2 is closed, and each runs in a session of its own. Their state stays in
the usual places (/run/containerd, /var/lib/containerd, /var/run/docker,
/var/lib/docker), because that is where the engines put the runtime's --root
and what the runtime sees in real use; the sockets are the default ones.

So a containerd or dockerd that is already running is an error: the tests say
so and stop rather than share (or fight over) those sockets and dirs with a
daemon whose configuration they do not know (dockerd without runv registered,
say). Stop the other daemon first.

Nothing here needs pytest; `conftest.py` wraps it in fixtures.
"""
from __future__ import annotations

import errno
import os
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))

PACKAGES = ("containerd", "docker.io", "runc", "busybox-static")
CONTAINERD_SOCK = "/run/containerd/containerd.sock"
DOCKER_SOCK = "/var/run/docker.sock"
# docker's CLI from Debian's docker.io, which matches the daemon; another client
# (a newer static one in /usr/local/bin, say) would have to negotiate the API.
DOCKER = "/usr/bin/docker"
CTR = "/usr/bin/ctr"
NAMESPACE = "runv-test"           # the containerd namespace of the ctr tests
LABEL = "runv-engines-test"       # on every docker container the tests make
IMAGE = "busybox:local"
CTR_IMAGE = "docker.io/library/busybox:local"
# RUNV_ENGINES_RUNTIME=runc runs the same tests with runc as the runtime, to check
# the plumbing (daemons, images, network, the tests themselves) apart from runv.
RUNTIME = os.environ.get("RUNV_ENGINES_RUNTIME", "runv")
# One engine command, a VM boot included (1.2-1.7 s under TCG here). Kept short so
# that a runtime that hangs costs minutes, not hours, of a whole `pytest tests`.
COMMAND_TIMEOUT = 60
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Where each engine tells a runc-compatible runtime to keep its state (--root).
# docker 20.10 passes runtime-runc/moby for every runtime, runv included.
DOCKER_RUNTIME_ROOT = "/run/docker/runtime-runc/moby"
CTR_RUNTIME_ROOT = f"/run/containerd/runc/{NAMESPACE}"
RUNV_DEFAULT_ROOT = "/run/runv"
# Mounts under these belong to the engines (rootfs, netns, shm, the data root).
ENGINE_MOUNT_PREFIXES = ("/run/containerd", "/var/lib/containerd", "/run/docker", "/var/lib/docker")
# In the argv of the CRI tests' private containerd (cri.py), which may run beside ours.
CRI_PRIVATE_MARK = "runv-cri-"

CONTAINERD_CONFIG = f"""\
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
# The CRI plugin is for Kubernetes; the tests drive containerd through ctr and dockerd.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{CONTAINERD_SOCK}"
"""


class EngineError(Exception):
    pass


# ---------------------------------------------------------------- packages

def _installed(package: str) -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", package],
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() == "install ok installed"


def ensure_packages(packages=PACKAGES) -> list[str]:
    """Install the missing Debian packages; `apt-get update` only if that fails.

    Returns what was installed. Package scripts must not start the daemons
    (the tests start them by hand), so a policy-rc.d that forbids it is put in
    place for the install when there is none.
    """
    missing = [p for p in packages if not _installed(p)]
    if not missing:
        return []
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH=PATH)
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    policy = "/usr/sbin/policy-rc.d"
    own_policy = not os.path.exists(policy)
    if own_policy:
        with open(policy, "w") as f:
            f.write("#!/bin/sh\n# runv engine tests: no service starts during apt-get install\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        r = subprocess.run(install, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
            r = subprocess.run(install, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise EngineError(f"apt-get install {' '.join(missing)} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    finally:
        if own_policy:
            os.unlink(policy)
    return missing


def find_runv() -> str:
    """The runv the engines will call: $RUNV_BIN, else `runv` on PATH (make install)."""
    path = os.environ.get("RUNV_BIN") or shutil.which("runv") or "/usr/local/bin/runv"
    return os.path.abspath(path)


# ---------------------------------------------------------------- processes

@dataclass
class Proc:
    pid: int
    ppid: int
    comm: str
    cmdline: str


def processes() -> list[Proc]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        # comm may hold spaces and parens: it ends at the last ')'.
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue
        out.append(Proc(int(name), int(fields[1]), comm, cmdline))
    return out


def pids_named(comm: str) -> list[int]:
    """The processes called comm, but for the CRI tests' private containerd."""
    return [p.pid for p in processes() if p.comm == comm and CRI_PRIVATE_MARK not in p.cmdline]


def descendants(pids, procs: list[Proc] | None = None) -> list[int]:
    procs = processes() if procs is None else procs
    children: dict[int, list[int]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p.pid)
    found, todo = [], list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def vms_of(pid: int) -> list[int]:
    """The QEMUs among pid's descendants: a runv container's VM is its shim's child."""
    procs = processes()
    below = set(descendants([pid], procs))
    return [p.pid for p in procs if p.pid in below and p.comm.startswith("qemu-system")]


def engine_shims(procs: list[Proc] | None = None) -> list[Proc]:
    """containerd's shims for our containerd (they outlive it by design)."""
    procs = processes() if procs is None else procs
    return [p for p in procs if p.comm.startswith("containerd-shim")
            and f"-address {CONTAINERD_SOCK}" in p.cmdline]


def kill_trees(pids) -> list[int]:
    """SIGKILL the processes and all their descendants; return who was still alive."""
    procs = processes()
    alive = {p.pid for p in procs}
    victims = [p for p in pids if p in alive]
    victims += [d for d in descendants(victims, procs) if d not in victims]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return victims


def engine_mounts() -> list[str]:
    """Mount points under the engines' dirs, deepest first."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if any(point == p or point.startswith(p + "/") for p in ENGINE_MOUNT_PREFIXES):
                points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------- daemons

def _tail(path: str, n: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


@dataclass
class Daemons:
    """containerd and dockerd run by hand, with runv registered in dockerd."""
    workdir: str
    runv: str
    containerd: subprocess.Popen | None = None
    dockerd: subprocess.Popen | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def containerd_log(self) -> str:
        return os.path.join(self.workdir, "containerd.log")

    @property
    def dockerd_log(self) -> str:
        return os.path.join(self.workdir, "dockerd.log")

    def env(self) -> dict[str, str]:
        env = dict(os.environ, PATH=PATH, DOCKER_HOST=f"unix://{DOCKER_SOCK}")
        env.pop("DOCKER_CONTEXT", None)
        env.pop("CONTAINERD_ADDRESS", None)
        return env

    # -- clients

    def docker(self, *args: str, timeout: float = COMMAND_TIMEOUT, input: str | None = None,
               check: bool = False) -> subprocess.CompletedProcess:
        r = subprocess.run([DOCKER, *args], input=input, capture_output=True, text=True,
                           errors="replace", timeout=timeout, env=self.env(),
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise EngineError(f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def ctr(self, *args: str, timeout: float = COMMAND_TIMEOUT, input: str | None = None,
            check: bool = False, namespace: str = NAMESPACE) -> subprocess.CompletedProcess:
        r = subprocess.run([CTR, "--address", CONTAINERD_SOCK, "--namespace", namespace, *args],
                           input=input, capture_output=True, text=True, errors="replace",
                           timeout=timeout, env=self.env(),
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise EngineError(f"ctr {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    # -- start

    def refuse_running(self) -> None:
        for name, _sock in (("containerd", CONTAINERD_SOCK), ("dockerd", DOCKER_SOCK)):
            pids = pids_named(name)
            if pids:
                raise EngineError(
                    f"{name} is already running (pid {', '.join(map(str, pids))}); the engine tests "
                    f"start their own containerd and dockerd (with runv registered) on the default "
                    f"sockets and state dirs. Stop it first (kill {pids[0]}).")

    def start(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        self.refuse_running()
        # dockerd bind-mounts its data root on itself and undoes that on a clean
        # shutdown, but only if it made the mount: one left by a dockerd that was
        # killed would otherwise outlive the next run too.
        if "/var/lib/docker" in engine_mounts():
            subprocess.run(["umount", "-l", "/var/lib/docker"], capture_output=True)
        config = os.path.join(self.workdir, "containerd.toml")
        with open(config, "w") as f:
            f.write(CONTAINERD_CONFIG)
        t0 = time.monotonic()
        self.containerd = self._spawn(
            ["containerd", "--config", config, "--log-level", "debug"], self.containerd_log)
        self._wait_ready("containerd", self.containerd, self.containerd_log,
                         lambda: self.ctr("version", timeout=10).returncode == 0)
        self.timings["containerd"] = time.monotonic() - t0

        # An empty daemon.json of our own, so that one in /etc/docker can neither
        # define runv a second time (dockerd refuses that) nor change the setup.
        daemon_json = os.path.join(self.workdir, "daemon.json")
        with open(daemon_json, "w") as f:
            f.write("{}\n")
        t0 = time.monotonic()
        self.dockerd = self._spawn(
            ["dockerd", "--debug",
             "--config-file", daemon_json,
             "--pidfile", os.path.join(self.workdir, "dockerd.pid"),
             "--host", f"unix://{DOCKER_SOCK}",
             f"--containerd={CONTAINERD_SOCK}",
             "--storage-driver=overlay2",
             "--iptables=false", "--ip-forward=false", "--ip-masq=false",
             "--add-runtime", f"runv={self.runv}"],
            self.dockerd_log)
        self._wait_ready("dockerd", self.dockerd, self.dockerd_log,
                         lambda: self.docker("version", "--format", "{{.Server.Version}}",
                                             timeout=10).returncode == 0)
        self.timings["dockerd"] = time.monotonic() - t0

    def _spawn(self, argv: list[str], log_path: str) -> subprocess.Popen:
        with open(log_path, "ab") as log:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    close_fds=True, start_new_session=True, env=self.env(),
                                    cwd="/")

    def _wait_ready(self, name: str, proc: subprocess.Popen, log: str, ready, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EngineError(f"{name} exited with {proc.returncode} while starting; "
                                  f"the end of {log}:\n{_tail(log)}")
            try:
                if ready():
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.1)
        raise EngineError(f"{name} did not answer within {timeout:.0f} s; the end of {log}:\n{_tail(log)}")

    # -- images

    def load_images(self) -> None:
        """busybox:local in docker (imported from a busybox rootfs), and in containerd's
        namespace from `docker save` (a docker-archive tar, which `ctr image import` takes)."""
        t0 = time.monotonic()
        sys.path.insert(0, os.path.dirname(HERE))
        from mkbundle import make_rootfs

        rootfs = os.path.join(self.workdir, "rootfs")
        shutil.rmtree(rootfs, ignore_errors=True)
        make_rootfs(rootfs)
        os.makedirs(os.path.join(rootfs, "www"), exist_ok=True)
        tar_path = os.path.join(self.workdir, "rootfs.tar")

        def root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info

        with tarfile.open(tar_path, "w") as tar:
            for name in sorted(os.listdir(rootfs)):
                tar.add(os.path.join(rootfs, name), arcname=name, filter=root_owned)
        self.docker("import", "--change", 'CMD ["sh"]', tar_path, IMAGE, check=True)
        archive = os.path.join(self.workdir, "busybox-image.tar")
        self.docker("save", "-o", archive, IMAGE, check=True)
        self.ctr("image", "import", archive, check=True)
        self.timings["images"] = time.monotonic() - t0

    # -- containers left by tests

    def _try(self, client, *args: str, timeout: float) -> subprocess.CompletedProcess | None:
        """A cleanup command: one that hangs must not stop the rest of the cleanup."""
        try:
            return client(*args, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def remove_docker_containers(self) -> list[str]:
        """Force-remove the docker containers the tests made (they carry LABEL)."""
        r = self._try(self.docker, "ps", "-aq", "--no-trunc", "--filter", f"label={LABEL}", timeout=30)
        ids = r.stdout.split() if r else []
        for cid in ids:
            self._try(self.docker, "rm", "-f", cid, timeout=60)
        return ids

    def remove_ctr_containers(self) -> list[str]:
        """Kill and delete every task and container in the tests' containerd namespace."""
        r = self._try(self.ctr, "task", "ls", "-q", timeout=30)
        tasks = r.stdout.split() if r else []
        for task in tasks:
            self._try(self.ctr, "task", "kill", "-s", "KILL", task, timeout=30)
        for task in tasks:
            self._try(self.ctr, "task", "delete", "--force", task, timeout=60)
        r = self._try(self.ctr, "container", "ls", "-q", timeout=30)
        containers = r.stdout.split() if r else []
        for c in containers:
            self._try(self.ctr, "container", "delete", c, timeout=30)
        return sorted(set(tasks) | set(containers))

    def remove_containers(self) -> list[str]:
        return self.remove_docker_containers() + self.remove_ctr_containers()

    # -- stop

    def stop(self) -> list[str]:
        """Stop dockerd, then containerd; then kill and unmount whatever they left.

        Returns a description of each thing that had to be cleaned up by force
        (empty when the daemons left nothing behind)."""
        forced: list[str] = []
        procs = processes()
        ours = [p.pid for p in (self.dockerd, self.containerd) if p is not None]
        tree = descendants(ours, procs)
        for name, proc in (("dockerd", self.dockerd), ("containerd", self.containerd)):
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                forced.append(f"{name} (pid {proc.pid}) ignored SIGTERM for 30 s")
                proc.kill()
                proc.wait(timeout=30)
        procs = processes()
        alive = {p.pid: p for p in procs}
        stragglers = [pid for pid in tree if pid in alive]
        stragglers += [p.pid for p in engine_shims(procs) if p.pid not in stragglers]
        for pid in stragglers:
            forced.append(f"process left running: {pid} {alive[pid].cmdline[:160]}")
        kill_trees(stragglers)
        for pid in stragglers:
            _wait_gone(pid, 5)
        for point in engine_mounts():
            r = subprocess.run(["umount", "-l", point], capture_output=True, text=True)
            forced.append(f"mount left: {point}" + ("" if r.returncode == 0 else f" (umount: {r.stderr.strip()})"))
        netns_dir = "/run/docker/netns"
        if os.path.isdir(netns_dir):
            for n in os.listdir(netns_dir):
                forced.append(f"network namespace file left: {netns_dir}/{n}")
                try:
                    os.unlink(os.path.join(netns_dir, n))
                except OSError:
                    pass
        return forced


# ---------------------------------------------------------------- leaks

def host_taps() -> list[str]:
    return sorted(n for n in os.listdir("/sys/class/net") if n.endswith("_runv"))


def leftovers(ids) -> list[str]:
    """What runv may have left once every container is gone through the engines:
    VMs, shims, taps, state dirs, rootfs mounts.

    Not docker's network namespaces: libnetwork unmounts and removes those
    files in a garbage collection that runs every 60 s (and at shutdown), so
    `stop` checks them. runv's own netns (made by its shim) has no file, and
    lives as long as some process is in it: a leaked one shows as a process."""
    ids = [i for i in ids if i]
    found = []
    me = os.getpid()
    for p in processes():
        if p.pid == me:
            continue
        engine_vm = p.comm.startswith("qemu-system") and ("/run/docker/" in p.cmdline or "/run/containerd/" in p.cmdline)
        mentions = [i for i in ids if i in p.cmdline]
        if engine_vm or mentions or p in engine_shims([p]):
            found.append(f"process {p.pid} ({p.comm}): {p.cmdline[:200]}")
    for tap in host_taps():
        found.append(f"tap in the host namespace: {tap}")
    for root in (DOCKER_RUNTIME_ROOT, CTR_RUNTIME_ROOT):
        if os.path.isdir(root) and os.listdir(root):
            found.append(f"state left in {root}: {sorted(os.listdir(root))}")
    if os.path.isdir(RUNV_DEFAULT_ROOT):
        stale = [n for n in os.listdir(RUNV_DEFAULT_ROOT) if n in ids]
        if stale:
            found.append(f"state left in {RUNV_DEFAULT_ROOT}: {stale}")
    for point in engine_mounts():
        if point.startswith("/run/containerd/io.containerd.runtime") or \
                point.endswith("/merged") or any(i in point for i in ids):
            found.append(f"mount left: {point}")
    return found


# ---------------------------------------------------------------- a terminal

def run_in_pty(argv: list[str], input: bytes = b"", timeout: float = COMMAND_TIMEOUT,
               env: dict[str, str] | None = None, input_after: bytes | None = None,
               wait_for: bytes | None = None) -> tuple[int, bytes]:
    """Run argv with a pty as its controlling terminal and stdio, as in a shell.

    `input` is typed at once; `input_after` is typed once `wait_for` has shown up
    in the output. Returns (exit status, everything the terminal showed)."""
    master, slave = os.openpty()
    try:
        import fcntl
        import struct
        import termios
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))

        def controlling_tty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                start_new_session=True, preexec_fn=controlling_tty)
    finally:
        os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        if input:
            os.write(master, input)
        while True:
            if input_after is not None and wait_for is not None and wait_for in out:
                os.write(master, input_after)
                input_after = None
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(argv, timeout, output=out)
            ready, _, _ = select.select([master], [], [], min(left, 0.2))
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError as e:
                    if e.errno != errno.EIO:
                        raise
                    data = b""
                if not data:  # every slave fd is closed: the program and its children are done
                    break
                out += data
            elif proc.poll() is not None:
                # Exited; a child may still hold the slave, so drain what is there and stop.
                while select.select([master], [], [], 0.2)[0]:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        break
                    if not data:
                        break
                    out += data
                break
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), out
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        os.close(master)


# ---- helpers shared by the engine tests (docker, podman: any engine callable
# with `logs` and `inspect`) ----

# A loop that reports itself ready, so that a signal sent after "ready" finds its traps set.
READY_LOOP = 'echo ready; while :; do sleep 0.1; done'


def wait_logs(engine, cid: str, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        r = engine("logs", cid)
        if text in r.stdout:
            return r.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never showed in the logs of {cid[:12]}: "
                                 f"{r.stdout!r} {r.stderr!r}")
        time.sleep(0.2)


def wait_exited(engine, cid: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while engine.inspect(cid, "{{.State.Status}}") != "exited":
        assert time.monotonic() < deadline, f"{cid[:12]} never exited"
        time.sleep(0.2)
    return int(engine.inspect(cid, "{{.State.ExitCode}}"))
