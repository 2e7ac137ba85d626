"""A private containerd with its CRI plugin, for the Kubernetes (CRI) tests.

Unlike daemons.py (containerd and dockerd on the default sockets and dirs),
this containerd is private: its root (images, snapshots) in the session's work
dir, its state, gRPC socket and the runtimes' --root in a dir of its own under
/run, a CNI config and IPAM store of its own, and two RuntimeClass handlers:
`runv` (the runc.v2 shim with BinaryName = runv, as a cluster would register
it) and `runc` (the same shim with runc, to compare). So it can run beside the
engine tests' containerd; daemons.py tells the two apart by PRIVATE_MARK.

Pods get their network from Debian's CNI plugins: `bridge` on a bridge of our
own (BRIDGE, with the gateway address SUBNET's .1, no masquerade: the traffic
stays on this machine) and `host-local` IPAM. The images are local, imported
with `ctr -n k8s.io images import` from docker-archive tars built here: busybox
(Debian's busybox-static, as the docker tests build it) and a pause image whose
only program is a tiny static pause compiled with musl-gcc. No registry.

Some state is the host's whatever containerd is told: the network namespace
files (/var/run/netns/cni-*, a path containerd 1.6 does not let one change),
the bridge, net.ipv4.ip_forward (the bridge plugin turns it on) and the pods'
cgroup parent. `CriContainerd.start` notes how the host had them, `leftovers`
reports what a removed pod left, and `stop` gives the rest back.

Nothing here needs pytest; `conftest.py` wraps it in fixtures.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import daemons
from daemons import PATH, EngineError

PACKAGES = ("containerd", "containernetworking-plugins", "runc", "busybox-static", "musl-tools")
CTR = "/usr/bin/ctr"
CNI_PLUGINS = "/usr/lib/cni"
PRIVATE_MARK = daemons.CRI_PRIVATE_MARK    # in the run dir's name, and so in containerd's argv
NAMESPACE = "k8s.io"                        # the containerd namespace of the CRI plugin
PAUSE_IMAGE = "localhost/runv-pause:local"
BUSYBOX_IMAGE = "localhost/runv-busybox:local"
BRIDGE = "runvcri0"
SUBNET = "10.213.47.0/24"
GATEWAY = "10.213.47.1"
CNI_NETWORK = "runv-cri-test"
CGROUP_PARENT = "/runv-cri-test"            # every test pod's cgroup parent (cgroupfs)
CGROUP_ROOT = "/sys/fs/cgroup"
NETNS_DIR = "/var/run/netns"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
HANDLERS = ("runv", "runc")
RUNC = "/usr/sbin/runc"

PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }

int main(void)
{
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGCHLD, reap);
    for (;;)
        pause();
}
"""


# ---------------------------------------------------------------- images

def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def docker_archive(rootfs: str, tag: str, cmd: list[str], path: str) -> None:
    """Write a one-layer docker-archive (what `docker save` writes) of rootfs."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for name in sorted(os.listdir(rootfs)):
            tar.add(os.path.join(rootfs, name), arcname=name, filter=_root_owned)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": cmd, "Env": [f"PATH={PATH}"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in ((config_name, config), (layer_name, layer_bytes), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


def pause_rootfs(workdir: str) -> str:
    rootfs = os.path.join(workdir, "pause-rootfs")
    shutil.rmtree(rootfs, ignore_errors=True)
    for d in ("dev", "proc", "sys", "etc", "tmp"):
        os.makedirs(os.path.join(rootfs, d))
    src = os.path.join(workdir, "pause.c")
    with open(src, "w") as f:
        f.write(PAUSE_C)
    r = subprocess.run(["musl-gcc", "-static", "-Os", "-s", "-o", os.path.join(rootfs, "pause"), src],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise EngineError(f"musl-gcc could not build the pause program: {r.stderr.strip()}")
    return rootfs


def busybox_rootfs(workdir: str) -> str:
    sys.path.insert(0, os.path.dirname(daemons.HERE))
    from mkbundle import make_rootfs

    rootfs = os.path.join(workdir, "busybox-rootfs")
    shutil.rmtree(rootfs, ignore_errors=True)
    make_rootfs(rootfs)
    os.makedirs(os.path.join(rootfs, "www"), exist_ok=True)
    return rootfs


# ---------------------------------------------------------------- host state

def netns_files() -> set[str]:
    try:
        return {n for n in os.listdir(NETNS_DIR) if n.startswith("cni-")}
    except FileNotFoundError:
        return set()


def cgroup_parents() -> list[str]:
    dirs = [os.path.join(CGROUP_ROOT, h, CGROUP_PARENT.strip("/")) for h in sorted(os.listdir(CGROUP_ROOT))]
    dirs.append(os.path.join(CGROUP_ROOT, CGROUP_PARENT.strip("/")))
    return [d for d in dirs if os.path.isdir(d)]


def bridge_ports() -> list[str]:
    try:
        return sorted(os.listdir(f"/sys/class/net/{BRIDGE}/brif"))
    except FileNotFoundError:
        return []


def _in_pod_cgroup(pid: int) -> bool:
    """Whether a process sits in a test pod's cgroup (runv puts each VM's QEMU
    there; its argv names none of our dirs, and an orphan has no runv parent)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return any(line.split(":", 2)[2].startswith(CGROUP_PARENT + "/") for line in f)
    except (OSError, IndexError):
        return False


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@dataclass
class HostBefore:
    netns: set[str]
    ip_forward: str
    bridge: bool
    cgroup_parents: list[str]

    @classmethod
    def now(cls) -> HostBefore:
        return cls(netns_files(), _read(IP_FORWARD), os.path.exists(f"/sys/class/net/{BRIDGE}"), cgroup_parents())


# ---------------------------------------------------------------- the daemon

@dataclass
class CriContainerd:
    workdir: str
    runv: str
    rundir: str = ""
    proc: subprocess.Popen | None = None
    before: HostBefore | None = None
    timings: dict[str, float] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)     # every pod and container id the tests made

    # -- paths

    @property
    def sock(self) -> str:
        return os.path.join(self.rundir, "containerd.sock")

    @property
    def state(self) -> str:
        return os.path.join(self.rundir, "state")

    def runtime_root(self, handler: str) -> str:
        """What the shim passes as --root: Root from the handler's options, then the namespace."""
        return os.path.join(self.rundir, "runtime", handler, NAMESPACE)

    @property
    def log(self) -> str:
        return os.path.join(self.workdir, "containerd.log")

    @property
    def config_path(self) -> str:
        return os.path.join(self.rundir, "containerd.toml")   # the rundir's name marks the argv

    def config(self) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        runtimes = ""
        for handler, binary in (("runv", self.runv), ("runc", RUNC)):
            runtimes += f"""
[{cri}.containerd.runtimes.{handler}]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.{handler}.options]
  BinaryName = "{binary}"
  Root = "{os.path.join(self.rundir, 'runtime', handler)}"
"""
        return f"""\
version = 2
root = "{os.path.join(self.workdir, 'root')}"
state = "{self.state}"

[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{os.path.join(self.workdir, 'opt')}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # The pause container asks for oom_score_adj -998, which this host may not allow
  # (runc then fails); clamp to containerd's own, as one does in a container.
  restrict_oom_score_adj = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.cni]
  bin_dir = "{os.path.join(self.workdir, 'cni-bin')}"
  conf_dir = "{os.path.join(self.workdir, 'cni-conf')}"
  max_conf_num = 1
{runtimes}"""

    def cni_config(self) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0", "name": CNI_NETWORK,
            "plugins": [{
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                         "routes": [{"dst": "0.0.0.0/0"}],
                         "dataDir": os.path.join(self.workdir, "cni-ipam")},
            }],
        }

    def env(self) -> dict[str, str]:
        env = dict(os.environ, PATH=PATH)
        env.pop("CONTAINERD_ADDRESS", None)
        env.pop("CONTAINERD_NAMESPACE", None)
        return env

    def ctr(self, *args: str, timeout: float = daemons.COMMAND_TIMEOUT,
            check: bool = False) -> subprocess.CompletedProcess:
        r = subprocess.run([CTR, "--address", self.sock, "--namespace", NAMESPACE, *args],
                           capture_output=True, text=True, errors="replace", timeout=timeout,
                           env=self.env(), stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise EngineError(f"ctr {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    # -- start

    def refuse_shared(self) -> None:
        if os.path.exists(f"/sys/class/net/{BRIDGE}") and bridge_ports():
            raise EngineError(f"the bridge {BRIDGE} has ports {bridge_ports()}: another CRI test run "
                              f"is using it; stop it first")

    def start(self) -> None:
        self.refuse_shared()
        self.before = HostBefore.now()
        os.makedirs(self.workdir, exist_ok=True)
        self.rundir = tempfile.mkdtemp(prefix=PRIVATE_MARK, dir="/run")
        bindir = os.path.join(self.workdir, "cni-bin")
        confdir = os.path.join(self.workdir, "cni-conf")
        os.makedirs(bindir, exist_ok=True)
        os.makedirs(confdir, exist_ok=True)
        for plugin in ("bridge", "host-local", "loopback"):
            link = os.path.join(bindir, plugin)
            if not os.path.lexists(link):
                os.symlink(os.path.join(CNI_PLUGINS, plugin), link)
        with open(os.path.join(confdir, "10-runv-cri-test.conflist"), "w") as f:
            json.dump(self.cni_config(), f, indent=2)
        with open(self.config_path, "w") as f:
            f.write(self.config())

        t0 = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["containerd", "--config", self.config_path, "--log-level", "debug"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True,
                start_new_session=True, env=self.env(), cwd="/")
        self._wait_ready()
        self.timings["containerd"] = time.monotonic() - t0
        t0 = time.monotonic()
        self.load_images()
        self.timings["images"] = time.monotonic() - t0

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineError(f"containerd exited with {self.proc.returncode} while starting; "
                                  f"the end of {self.log}:\n{daemons._tail(self.log)}")
            try:
                if os.path.exists(self.sock) and self.ctr("version", timeout=10).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.1)
        raise EngineError(f"containerd did not answer within {timeout:.0f} s; the end of "
                          f"{self.log}:\n{daemons._tail(self.log)}")

    def load_images(self) -> None:
        for rootfs, tag, cmd in ((pause_rootfs(self.workdir), PAUSE_IMAGE, ["/pause"]),
                                 (busybox_rootfs(self.workdir), BUSYBOX_IMAGE, ["sh"])):
            archive = os.path.join(self.workdir, tag.rsplit("/", 1)[-1].replace(":", "-") + ".tar")
            docker_archive(rootfs, tag, cmd, archive)
            self.ctr("images", "import", archive, check=True)

    # -- leaks

    def processes_left(self) -> list[str]:
        """Shims of this containerd, and VMs or runtimes working in its dirs."""
        found = []
        me = os.getpid()
        daemon = self.proc.pid if self.proc else -1
        for p in daemons.processes():
            if p.pid in (me, daemon):
                continue
            shim = p.comm.startswith("containerd-shim") and f"-address {self.sock}" in p.cmdline
            if shim or self.rundir in p.cmdline or _in_pod_cgroup(p.pid):
                found.append(f"process {p.pid} ({p.comm}): {p.cmdline[:200]}")
        return found

    def mounts_left(self) -> list[str]:
        """Mounts of containers (rootfs, shm) under the state dir."""
        points = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(self.state + "/"):
                    points.append(point)
        return sorted(set(points), key=lambda p: (-p.count("/"), p))

    def leftovers(self) -> list[str]:
        """What the pods removed so far left behind: VMs, shims, runtime state,
        network namespaces, veths on the bridge, taps, mounts, cgroups."""
        found = self.processes_left()
        for handler in HANDLERS:
            root = self.runtime_root(handler)
            if os.path.isdir(root) and os.listdir(root):
                found.append(f"state left in {root}: {sorted(os.listdir(root))}")
        for n in sorted(netns_files() - (self.before.netns if self.before else set())):
            found.append(f"network namespace left: {NETNS_DIR}/{n}")
        for port in bridge_ports():
            found.append(f"interface left on {BRIDGE}: {port}")
        for tap in daemons.host_taps():
            found.append(f"tap in the host namespace: {tap}")
        for point in self.mounts_left():
            found.append(f"mount left: {point}")
        for parent in cgroup_parents():
            children = [d for d in os.listdir(parent) if os.path.isdir(os.path.join(parent, d))]
            if children:
                found.append(f"cgroups left in {parent}: {children}")
        return found

    # -- stop

    def stop(self) -> list[str]:
        """Stop containerd; kill, unmount and remove what it or the pods left;
        give back the host's shared state. Returns what had to be forced."""
        forced: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                forced.append(f"containerd (pid {self.proc.pid}) ignored SIGTERM for 30 s")
                self.proc.kill()
                self.proc.wait(timeout=30)
        if self.rundir:
            stragglers = [int(line.split()[1]) for line in self.processes_left()]
            forced += self.processes_left()
            daemons.kill_trees(stragglers)
            for pid in stragglers:
                daemons._wait_gone(pid, 5)
            for point in self.mounts_left():
                forced.append(f"mount left: {point}")
                subprocess.run(["umount", "-l", point], capture_output=True)
        before = self.before
        if before is not None:
            for n in sorted(netns_files() - before.netns):
                forced.append(f"network namespace left: {NETNS_DIR}/{n}")
                subprocess.run(["umount", "-l", os.path.join(NETNS_DIR, n)], capture_output=True)
                try:
                    os.unlink(os.path.join(NETNS_DIR, n))
                except OSError:
                    pass
            if not before.bridge and os.path.exists(f"/sys/class/net/{BRIDGE}"):
                subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
            with open(IP_FORWARD, "w") as f:
                f.write(before.ip_forward)
            for parent in cgroup_parents():
                if parent not in before.cgroup_parents:
                    try:
                        os.rmdir(parent)
                    except OSError as e:
                        forced.append(f"cgroup parent {parent} not removed: {e}")
        if self.rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)
        return forced


# ---------------------------------------------------------------- pods

@dataclass
class Pod:
    id: str
    config: Any
    handler: str
    containers: list[str] = field(default_factory=list)
