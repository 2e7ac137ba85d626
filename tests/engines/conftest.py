"""Fixtures for the engine tests: containerd and dockerd run by hand, runv registered.

The daemons start once per session, on first use (so `pytest tests/unit` never
starts them), after the Debian packages are installed if missing. At the end of
the session every container the tests made is removed through its engine, then
the suite checks that runv left nothing behind (no VM, shim, tap, network
namespace, state dir or mount), then both daemons stop and the suite checks that
they left nothing running or mounted either.

A containerd or dockerd already running is an error (see daemons.py).

Select or skip these tests with `-m engines` / `-m "not engines"`.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import daemons  # noqa: E402
from daemons import LABEL, RUNTIME, Daemons, EngineError  # noqa: E402

# Every container id the tests made, for the leak checks.
SEEN_IDS: list[str] = []


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "engines: runs containers through containerd and dockerd with runv as the runtime")


@pytest.fixture(scope="session")
def runv_bin() -> str:
    """The runtime binary the engines are told to use (runv, or runc, see RUNTIME)."""
    path = daemons.find_runv() if RUNTIME == "runv" else "/usr/sbin/runc"
    if not os.access(path, os.X_OK):
        pytest.fail(f"runv is not installed at {path}: run `make install` (or set RUNV_BIN)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def engines(tmp_path_factory) -> Daemons:
    """containerd + dockerd, started for this session, with busybox:local loaded in both."""
    try:
        daemons.ensure_packages()
    except EngineError as e:
        pytest.fail(str(e), pytrace=False)
    d = Daemons(workdir=str(tmp_path_factory.mktemp("engines")), runv=daemons.find_runv())
    try:
        d.start()
        d.load_images()
    except BaseException as e:
        d.stop()
        if isinstance(e, EngineError):
            pytest.fail(str(e), pytrace=False)
        raise
    print(f"\nengines up in {d.timings} (logs in {d.workdir})", file=sys.stderr)
    yield d

    try:
        SEEN_IDS.extend(d.remove_containers())
        leaked = daemons.leftovers(SEEN_IDS)
    finally:
        forced = d.stop()
    assert leaked == [], f"runv left these behind after every container was removed: {leaked}"
    assert forced == [], f"stopping the daemons left these behind: {forced} (logs in {d.workdir})"
    assert daemons.pids_named("containerd") == [] and daemons.pids_named("dockerd") == []


def unique(prefix: str) -> str:
    prefix = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")[:24]
    return f"runv-{prefix}-{uuid.uuid4().hex[:8]}"


class Docker:
    """`docker` against the test daemon; `run` adds --runtime runv and the test label,
    and records the container's id (through --cidfile) for the leak checks."""

    def __init__(self, engines: Daemons, tmpdir: str):
        self.engines = engines
        self.tmpdir = tmpdir
        self.count = 0

    def __call__(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.engines.docker(*args, **kw)

    def argv(self, *args: str) -> list[str]:
        return [daemons.DOCKER, *args]

    def run_argv(self, *args: str) -> tuple[list[str], str]:
        self.count += 1
        cidfile = os.path.join(self.tmpdir, f"cid{self.count}")
        return [daemons.DOCKER, "run", "--runtime", RUNTIME, "--label", LABEL,
                "--cidfile", cidfile, *args], cidfile

    def record(self, cidfile: str) -> str:
        try:
            with open(cidfile) as f:
                cid = f.read().strip()
        except OSError:
            return ""
        SEEN_IDS.append(cid)
        return cid

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        argv, cidfile = self.run_argv(*args)
        try:
            r = self.engines.docker(*argv[1:], **kw)
        finally:
            cid = self.record(cidfile)
        r.cid = cid
        return r

    def run_d(self, *args: str, **kw) -> str:
        """`docker run -d`; returns the full container id."""
        r = self.run("-d", *args, **kw)
        assert r.returncode == 0, f"docker run -d {' '.join(args)}: {r.returncode} {r.stderr}"
        return r.stdout.strip().splitlines()[-1]

    def inspect(self, cid: str, fmt: str) -> str:
        return self.engines.docker("inspect", "-f", fmt, cid, check=True).stdout.strip()

    def cleanup(self) -> None:
        SEEN_IDS.extend(self.engines.remove_docker_containers())


class Ctr:
    """`ctr -n runv-test`; `run` adds --runc-binary <runv> (or runc, see RUNTIME)."""

    def __init__(self, engines: Daemons, runv: str):
        self.engines = engines
        self.runv = runv

    def __call__(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.engines.ctr(*args, **kw)

    def argv(self, *args: str) -> list[str]:
        return [daemons.CTR, "--address", daemons.CONTAINERD_SOCK, "--namespace", daemons.NAMESPACE, *args]

    def run_argv(self, *args: str) -> list[str]:
        return self.argv("run", "--runc-binary", self.runv, *args)

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.engines.ctr("run", "--runc-binary", self.runv, *args, **kw)

    def cleanup(self) -> None:
        SEEN_IDS.extend(self.engines.remove_ctr_containers())


@pytest.fixture
def docker(runv_bin, engines, tmp_path):
    d = Docker(engines, str(tmp_path))
    yield d
    d.cleanup()


@pytest.fixture
def ctr(runv_bin, engines):
    c = Ctr(engines, runv_bin)
    yield c
    c.cleanup()


@pytest.fixture
def name(request) -> str:
    """A fresh container name/id for this test (also recorded for the leak check)."""
    n = unique(request.node.name.removeprefix("test_"))
    SEEN_IDS.append(n)
    return n


@pytest.fixture(scope="session")
def podman_engine(runv_bin, tmp_path_factory):
    """A rootful Podman with a store and config of its own, runv its runtime and
    busybox:local imported; see podman_engine.py for what it shares with the host."""
    import podman_engine as pe

    try:
        daemons.ensure_packages(pe.PACKAGES)
    except EngineError as e:
        pytest.fail(str(e), pytrace=False)
    p = pe.Podman(workdir=str(tmp_path_factory.mktemp("podman")), runtime_path=runv_bin,
                  runtime_name=RUNTIME)
    try:
        p.start()
    except BaseException as e:
        p.stop()
        if isinstance(e, EngineError):
            pytest.fail(str(e), pytrace=False)
        raise
    yield p

    try:
        p.remove_containers()
        leaked = p.leftovers(p.seen)
    finally:
        forced = p.stop()
    assert leaked == [], f"Podman or runv left these behind after every container was removed: {leaked}"
    assert forced == [], f"removing the Podman store left these behind: {forced}"
    changes = pe.HostBefore.now().changes_since(p.before)
    assert changes == [], f"the host's shared Podman state was not given back: {changes}"


@pytest.fixture
def podman(podman_engine):
    yield podman_engine
    podman_engine.remove_containers()


# ---------------------------------------------------------------- Kubernetes' CRI (cri.py)

# The RuntimeClass handler the CRI tests run pods with (runc to check the plumbing, see RUNTIME).
CRI_HANDLER = RUNTIME


class CriSession:
    """The private containerd (cri.py) and a CRI client to it."""

    def __init__(self, engine, client):
        self.engine = engine
        self.client = client


@pytest.fixture(scope="session")
def cri_engine(runv_bin, tmp_path_factory):
    """containerd 1.6 with its CRI plugin, a CNI bridge, the handlers runv and runc,
    and local busybox and pause images; see cri.py for what it shares with the host."""
    import cri
    from cri_client import Cri

    try:
        daemons.ensure_packages(cri.PACKAGES)
    except EngineError as e:
        pytest.fail(str(e), pytrace=False)
    workdir = str(tmp_path_factory.mktemp("cri"))
    engine = cri.CriContainerd(workdir=workdir, runv=daemons.find_runv())
    try:
        engine.start()
        client = Cri(engine.sock, os.path.join(workdir, "gen"))
        client.version(timeout=30)
    except BaseException as e:
        forced = engine.stop()
        if isinstance(e, EngineError):
            pytest.fail(f"{e}\n(forced at stop: {forced})", pytrace=False)
        raise
    print(f"\nCRI containerd up in {engine.timings} (logs in {workdir})", file=sys.stderr)
    session = CriSession(engine, client)
    yield session

    try:
        remove_pods(session)
        leaked = engine.leftovers()
    finally:
        client.close()
        forced = engine.stop()
    assert leaked == [], f"pods left these behind once removed: {leaked} (logs in {workdir})"
    assert forced == [], f"stopping the CRI containerd left these behind: {forced} (logs in {workdir})"
    assert cri.HostBefore.now() == engine.before, "the host's shared CNI/cgroup state was not given back"


def remove_pods(session: CriSession) -> list[str]:
    """Stop and remove every pod of the private containerd, as the kubelet does."""
    ids = [p.id for p in session.client.pods()]
    for pod_id in ids:
        session.client.stop_pod(pod_id)
        session.client.remove_pod(pod_id)
    session.engine.seen.extend(ids)
    return ids


class Pods:
    """Pods made through the CRI, with cri.CGROUP_PARENT and a log dir in the test's tmp."""

    def __init__(self, session: CriSession, tmpdir: str):
        self.client = session.client
        self.session = session
        self.tmpdir = tmpdir

    def run(self, name: str, hostname: str = "", handler: str = CRI_HANDLER):
        import cri

        uid = uuid.uuid4().hex
        config = self.client.pod_config(name=name, uid=uid, hostname=hostname or name,
                                        log_directory=os.path.join(self.tmpdir, "logs", name),
                                        cgroup_parent=cri.CGROUP_PARENT)
        pod_id = self.client.run_pod(config, handler)
        self.session.engine.seen.append(pod_id)
        return cri.Pod(pod_id, config, handler)

    def start(self, pod, name: str, command: list[str]) -> str:
        """Create and start a busybox container in the pod; returns its id."""
        import cri

        config = self.client.container_config(name, cri.BUSYBOX_IMAGE, command, f"{name}/0.log")
        cid = self.client.create_container(pod.id, config, pod.config)
        pod.containers.append(cid)
        self.session.engine.seen.append(cid)
        self.client.start_container(cid)
        return cid

    def log_path(self, pod, name: str) -> str:
        return os.path.join(pod.config.log_directory, name, "0.log")

    def remove(self, pod) -> None:
        self.client.stop_pod(pod.id)
        self.client.remove_pod(pod.id)


@pytest.fixture
def cri_pods(cri_engine, tmp_path):
    """Make pods; after the test every pod is stopped and removed, and nothing may be left."""
    yield Pods(cri_engine, str(tmp_path))
    remove_pods(cri_engine)
    leaked = cri_engine.engine.leftovers()
    assert leaked == [], f"the test's pods left these behind once removed: {leaked}"
