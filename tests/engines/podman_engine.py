"""Podman for the engine tests: rootful, with a store, run dir and config of its own.

Podman has no daemon: each `podman` command opens the store, and a `conmon`
per container watches the runtime's container and runs `podman container
cleanup` when it exits. So a private Podman is a set of paths:

- `--root` / `--runroot` (images, containers, their run state),
- a containers.conf of our own in CONTAINERS_CONF (read instead of the host's,
  and passed on by podman to conmon and so to the cleanup command): runv
  registered under `[engine.runtimes]`, `cgroupfs`, `file` events, a libpod
  tmp dir and a network config dir of our own.

Some state is the host's whatever Podman is told, because it is shared by
design between every rootful Podman on the machine: the network namespace
files (/run/netns/netns-*, and /run/netns bind-mounted on itself), the default
network's bridge `podman0`, netavark's IPAM database (/run/containers/networks),
netavark's iptables chains, `net.ipv4.ip_forward`, the `libpod_parent` cgroup
(with plain directories in /sys/fs/cgroup for v1 controllers that are not
mounted), and the image blob info cache in /var/lib/containers/cache.
`Podman.start` notes how the host had them and refuses to share them with
another Podman that has containers running; `leftovers` reports what Podman or
runv should have removed with the containers and did not; `Podman.stop` gives
back what Podman keeps by design (the generic NETAVARK chains, the cgroup
parent, ip_forward, the /run/netns mount, the cache).

Nothing here needs pytest; `conftest.py` wraps it in fixtures.
"""
from __future__ import annotations

import errno
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field

import daemons
from daemons import COMMAND_TIMEOUT, PATH, EngineError

PACKAGES = ("podman", "netavark", "aardvark-dns", "iptables", "busybox-static")
PODMAN = "/usr/bin/podman"
IMAGE = "localhost/busybox:local"
LABEL = daemons.LABEL
BRIDGE = "podman0"                        # the default network's bridge
NETNS_DIR = "/run/netns"
NETAVARK_RUN_DIR = "/run/containers/networks"
# containers/image keeps a blob info cache here for root (`podman import` too), whatever the store.
IMAGE_CACHE_DIR = "/var/lib/containers"
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_PARENT = "libpod_parent"           # cgroupfs: containers under libpod_parent/libpod-<id>
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
PID_MAX = "/proc/sys/kernel/pid_max"
# The chains netavark makes once and keeps while the host runs; the per-network
# and per-port chains (NETAVARK-<hash>, NETAVARK-DN-<hash>) go with the containers.
NETAVARK_GENERIC_CHAINS = {
    "filter": {"NETAVARK_FORWARD"},
    "nat": {"NETAVARK-HOSTPORT-DNAT", "NETAVARK-HOSTPORT-MASQ", "NETAVARK-HOSTPORT-SETMARK"},
}
BUILTIN_CHAINS = ("INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING")
IPTABLES = ("iptables", "ip6tables")


# ---------------------------------------------------------------- host state shared by every Podman

def netns_files() -> set[str]:
    try:
        return {n for n in os.listdir(NETNS_DIR) if n.startswith("netns-")}
    except FileNotFoundError:
        return set()


def cgroup_parents() -> list[str]:
    base = CGROUP_ROOT
    dirs = [os.path.join(base, CGROUP_PARENT)]
    dirs += [os.path.join(base, h, CGROUP_PARENT) for h in sorted(os.listdir(base))]
    return [d for d in dirs if os.path.isdir(d)]


def netavark_rules() -> list[tuple[str, str, str]]:
    """(command, table, rule) for every iptables line that names a NETAVARK chain."""
    found = []
    for cmd in IPTABLES:
        if shutil.which(cmd) is None:
            continue
        for table in ("filter", "nat"):
            r = subprocess.run([cmd, "-w", "-t", table, "-S"], capture_output=True, text=True)
            found += [(cmd, table, line) for line in r.stdout.splitlines() if "NETAVARK" in line]
    return found


def _chain_of(rule: str) -> str:
    return rule.split()[1]


def _generic(table: str, rule: str) -> bool:
    """Whether a rule is one netavark keeps when no container is left: its
    generic chains, the jumps to them, and the port-forward mark and masquerade."""
    generic = NETAVARK_GENERIC_CHAINS.get(table, set())
    words = shlex.split(rule)
    chain, target = words[1], words[-1]
    if words[0] == "-N":
        return chain in generic
    return (chain in BUILTIN_CHAINS and target in generic) or \
        chain in ("NETAVARK-HOSTPORT-MASQ", "NETAVARK-HOSTPORT-SETMARK")


def _mounted(path: str) -> bool:
    """Whether path is a mount point (os.path.ismount misses a bind mount of a
    directory on itself, the same file system on both sides)."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@dataclass
class HostBefore:
    """The host's shared Podman state when the tests began."""
    netns: set[str]
    netns_dir_mounted: bool
    ip_forward: str
    rules: set[tuple[str, str, str]]
    cgroup_parents: list[str]
    cgroup_root: set[str]
    netavark_run_dir: bool
    image_cache_dir: bool

    @classmethod
    def now(cls) -> HostBefore:
        return cls(netns_files(), _mounted(NETNS_DIR), _read(IP_FORWARD), set(netavark_rules()),
                   cgroup_parents(), set(os.listdir(CGROUP_ROOT)), os.path.isdir(NETAVARK_RUN_DIR),
                   os.path.isdir(IMAGE_CACHE_DIR))


    def changes_since(self, before: HostBefore) -> list[str]:
        """How this state differs from `before`. A controller mounted at
        /sys/fs/cgroup meanwhile (by `runv --mount-cgroups`, say) is not Podman's."""
        changes = [f"{name}: {getattr(before, name)!r} -> {getattr(self, name)!r}"
                   for name in ("netns", "netns_dir_mounted", "ip_forward", "rules",
                                "cgroup_parents", "netavark_run_dir", "image_cache_dir")
                   if getattr(self, name) != getattr(before, name)]
        made = [n for n in sorted(self.cgroup_root - before.cgroup_root)
                if not _mounted(os.path.join(CGROUP_ROOT, n))]
        if made:
            changes.append(f"made in {CGROUP_ROOT}: {made}")
        return changes


# ---------------------------------------------------------------- a private Podman

@dataclass
class Podman:
    workdir: str
    runtime_path: str
    runtime_name: str = "runv"
    before: HostBefore | None = None
    timings: dict[str, float] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)   # the ids of the containers the tests made

    @property
    def root(self) -> str:
        return os.path.join(self.workdir, "root")

    @property
    def runroot(self) -> str:
        return os.path.join(self.workdir, "run")

    @property
    def conf(self) -> str:
        return os.path.join(self.workdir, "containers.conf")

    def env(self) -> dict[str, str]:
        env = dict(os.environ, PATH=PATH, CONTAINERS_CONF=self.conf,
                   CONTAINERS_STORAGE_CONF=os.path.join(self.workdir, "storage.conf"))
        for name in ("CONTAINER_HOST", "CONTAINER_CONNECTION", "CONTAINERS_REGISTRIES_CONF"):
            env.pop(name, None)
        return env

    def argv(self, *args: str) -> list[str]:
        return [PODMAN, "--root", self.root, "--runroot", self.runroot, *args]

    def __call__(self, *args: str, timeout: float = COMMAND_TIMEOUT, input: str | None = None,
                 check: bool = False) -> subprocess.CompletedProcess:
        r = subprocess.run(self.argv(*args), input=input, capture_output=True, text=True,
                           errors="replace", timeout=timeout, env=self.env(),
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise EngineError(f"podman {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    # -- start

    def refuse_shared(self) -> None:
        conmons = [p for p in daemons.processes() if p.comm == "conmon"]
        if conmons or os.path.exists(f"/sys/class/net/{BRIDGE}"):
            what = f"conmon pid {conmons[0].pid}" if conmons else f"the bridge {BRIDGE}"
            raise EngineError(
                f"another Podman has containers running ({what}); the Podman tests share the "
                f"default network's bridge, netns dir and iptables chains with it and clean "
                f"them up at the end. Stop its containers first (podman stop -a).")

    def write_config(self) -> None:
        ulimits = ""
        if self.runtime_name == "runc":
            # Rootful podman asks for nofile 1048576, above this machine's hard
            # limit; runc sets it on the host, where raising a hard limit needs
            # CAP_SYS_RESOURCE, which this machine's bounding set lacks. runv sets
            # it in the guest, so it needs no help. Once nofile is given, podman
            # asks for nproc 1048576 too, above the nproc that conmon (and so
            # runc) runs with here: kernel.pid_max.
            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], int(_read(PID_MAX)))
            ulimits = f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        with open(self.conf, "w") as f:
            f.write(
                "[containers]\n" + ulimits +
                "[engine]\n"
                'cgroup_manager = "cgroupfs"\n'
                'events_logger = "file"\n'
                f'runtime = "{self.runtime_name}"\n'
                f'tmp_dir = "{self.workdir}/tmp"\n'
                f'volume_path = "{self.root}/volumes"\n'
                "[engine.runtimes]\n"
                f'{self.runtime_name} = ["{self.runtime_path}"]\n'
                "[network]\n"
                'network_backend = "netavark"\n'
                f'network_config_dir = "{self.workdir}/networks"\n')
        with open(os.path.join(self.workdir, "storage.conf"), "w") as f:
            f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{self.root}"\nrunroot = "{self.runroot}"\n')

    def start(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        self.refuse_shared()
        self.before = HostBefore.now()
        self.write_config()
        t0 = time.monotonic()
        r = self("info", "--format", "{{.Host.NetworkBackend}} {{.Host.OCIRuntime.Path}}", check=True)
        backend, runtime = r.stdout.split()
        if backend != "netavark" or runtime != self.runtime_path:
            raise EngineError(f"podman runs {runtime} with {backend}, not {self.runtime_path} with netavark")
        self.load_image()
        self.timings["podman"] = time.monotonic() - t0

    def load_image(self) -> None:
        """busybox:local, imported from the same busybox rootfs as docker's."""
        sys.path.insert(0, os.path.dirname(daemons.HERE))
        from mkbundle import make_rootfs

        rootfs = os.path.join(self.workdir, "rootfs")
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
        shutil.rmtree(rootfs)
        self("import", "--change", 'CMD ["sh"]', tar_path, IMAGE, check=True)

    # -- containers

    def run_argv(self, *args: str) -> list[str]:
        return self.argv("run", "--label", LABEL, *args)

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self("run", "--label", LABEL, *args, **kw)

    def run_d(self, *args: str, **kw) -> str:
        """`podman run -d`; returns the full container id."""
        r = self.run("-d", *args, **kw)
        if r.returncode != 0:
            raise EngineError(f"podman run -d {' '.join(args)}: {r.returncode} {r.stderr}")
        return r.stdout.strip().splitlines()[-1]

    def inspect(self, cid: str, fmt: str) -> str:
        return self("inspect", "-f", fmt, cid, check=True).stdout.strip()

    def container_ids(self) -> list[str]:
        r = self("ps", "-aq", "--no-trunc", timeout=30)
        return r.stdout.split() if r.returncode == 0 else []

    def remove_containers(self) -> list[str]:
        """Force-remove every pod and container of this store; return the containers' ids.
        (An infra container goes with its pod only.)"""
        ids = self.container_ids()
        self.seen.extend(ids)
        try:
            self("pod", "rm", "-a", "-f", "-t", "0", timeout=120)
        except subprocess.TimeoutExpired:
            pass
        for cid in ids:
            try:
                self("rm", "-f", "-t", "0", cid, timeout=60)
            except subprocess.TimeoutExpired:
                pass
        return ids

    # -- what must be gone once the containers are

    def our_processes(self) -> list[daemons.Proc]:
        """conmon and podman processes of this store (a cleanup that hangs, say)."""
        me = os.getpid()
        return [p for p in daemons.processes()
                if p.pid != me and p.comm in ("conmon", "podman") and self.workdir + "/" in p.cmdline]

    def store_mounts(self) -> list[str]:
        """Mount points under the work dir, deepest first."""
        points = set()
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(self.workdir + "/"):
                    points.add(point)
        return sorted(points, key=lambda p: (-p.count("/"), p))

    def leftovers(self, ids: list[str]) -> list[str]:
        """What Podman or runv should have removed with the containers and did not."""
        ids = [i for i in ids if i]
        found = [f"process {p.pid} ({p.comm}): {p.cmdline[:200]}" for p in self.our_processes()]
        me = os.getpid()
        for p in daemons.processes():
            if p.pid != me and p.comm not in ("conmon", "podman") and \
                    (self.workdir + "/" in p.cmdline or any(i in p.cmdline for i in ids)):
                found.append(f"process {p.pid} ({p.comm}): {p.cmdline[:200]}")
        found += [f"tap in the host namespace: {t}" for t in daemons.host_taps()]
        if os.path.isdir(daemons.RUNV_DEFAULT_ROOT):
            stale = sorted(set(os.listdir(daemons.RUNV_DEFAULT_ROOT)) & set(ids))
            found += [f"state left in {daemons.RUNV_DEFAULT_ROOT}: {s}" for s in stale]
        new_netns = netns_files() - self.before.netns
        found += [f"network namespace file left: {NETNS_DIR}/{n}" for n in sorted(new_netns)]
        if os.path.exists(f"/sys/class/net/{BRIDGE}"):
            found.append(f"bridge left: {BRIDGE}")
        for cmd, table, rule in netavark_rules():
            if (cmd, table, rule) not in self.before.rules and not _generic(table, rule):
                found.append(f"{cmd} -t {table}: {rule}")
        for parent in cgroup_parents():
            found += [f"cgroup left: {parent}/{c}" for c in sorted(os.listdir(parent))
                      if c.startswith("libpod-")]
        # The overlay driver keeps its home bind-mounted on itself (made private)
        # while the store is open; container rootfs and shm mounts must be gone.
        overlay_home = os.path.join(self.root, "overlay")
        found += [f"mount left: {m}" for m in self.store_mounts() if m != overlay_home]
        return found

    # -- stop

    def stop(self) -> list[str]:
        """Give the host back what Podman keeps by design, and remove the store.

        Returns a description of each thing that had to be removed by force
        (processes, network namespaces, mounts other than the store's own)."""
        forced: list[str] = []
        stragglers = [p.pid for p in self.our_processes()]
        forced += [f"process left running: {pid}" for pid in stragglers]
        daemons.kill_trees(stragglers)
        for pid in stragglers:
            daemons._wait_gone(pid, 5)
        before = self.before or HostBefore.now()
        for n in sorted(netns_files() - before.netns):
            forced.append(f"network namespace file left: {NETNS_DIR}/{n}")
            subprocess.run(["umount", "-l", os.path.join(NETNS_DIR, n)], capture_output=True)
            try:
                os.unlink(os.path.join(NETNS_DIR, n))
            except OSError:
                pass
        # Podman, like `ip netns add`, bind-mounts /run/netns on itself (shared)
        # before its first namespace file. Not lazily: it stays while in use, and
        # it is busy for a moment after the last container (a file open in it).
        if not before.netns_dir_mounted and os.path.isdir(NETNS_DIR) and not os.listdir(NETNS_DIR):
            deadline = time.monotonic() + 10
            while _mounted(NETNS_DIR) and time.monotonic() < deadline:
                if subprocess.run(["umount", NETNS_DIR], capture_output=True).returncode != 0:
                    time.sleep(0.2)
        overlay_home = os.path.join(self.root, "overlay")
        for point in self.store_mounts():
            if point != overlay_home:
                forced.append(f"mount left: {point}")
            subprocess.run(["umount", "-l", point], capture_output=True)
        self._restore_iptables(before)
        with open(IP_FORWARD, "w") as f:
            f.write(before.ip_forward + "\n")
        for parent in cgroup_parents():
            if parent not in before.cgroup_parents:
                for child in os.listdir(parent):
                    if os.path.isdir(os.path.join(parent, child)):
                        _rmdir(os.path.join(parent, child))
                _rmdir(parent)
        # With cgroup v1, podman puts conmon in libpod_parent/conmon of every
        # controller the kernel has, mounted or not: for one that is not (hugetlb
        # here), it makes plain directories in the tmpfs at /sys/fs/cgroup.
        for name in sorted(set(os.listdir(CGROUP_ROOT)) - before.cgroup_root):
            path = os.path.join(CGROUP_ROOT, name)
            if not _mounted(path):
                shutil.rmtree(path, ignore_errors=True)
        if not before.netavark_run_dir:
            shutil.rmtree(NETAVARK_RUN_DIR, ignore_errors=True)
            _rmdir(os.path.dirname(NETAVARK_RUN_DIR))  # /run/containers, if that is all it held
        if not before.image_cache_dir:
            shutil.rmtree(IMAGE_CACHE_DIR, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
        return forced

    @staticmethod
    def _restore_iptables(before: HostBefore) -> None:
        """Delete the NETAVARK rules and chains that were not there before: rules
        first (jumps from the built-in chains included), then the empty chains."""
        added = [r for r in netavark_rules() if r not in before.rules]
        for cmd, table, rule in added:
            if rule.startswith("-A "):
                subprocess.run([cmd, "-w", "-t", table, "-D", *shlex.split(rule)[1:]], capture_output=True)
        for cmd, table, rule in added:
            if rule.startswith("-N "):
                subprocess.run([cmd, "-w", "-t", table, "-F", _chain_of(rule)], capture_output=True)
                subprocess.run([cmd, "-w", "-t", table, "-X", _chain_of(rule)], capture_output=True)


def _rmdir(path: str, timeout: float = 5) -> None:
    """rmdir; a cgroup is busy for a moment after its last process exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                return
            time.sleep(0.1)
