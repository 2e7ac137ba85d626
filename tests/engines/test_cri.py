"""Kubernetes' CRI with runv as the RuntimeClass handler: containerd 1.6's CRI
plugin, its runc.v2 shim with BinaryName = runv, a CNI bridge (see cri.py).

One VM per pod: the pause container boots the pod's VM and takes its NIC; the
app containers are created in that VM (runv.member, runv.sandbox.pod), each
with a light shim as its pid on the host.
"""
from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
import urllib.request

import cri
import pytest
from daemons import RUNTIME as CRI_HANDLER
from daemons import vms_of

pytestmark = pytest.mark.engines

HTTPD = ["sh", "-c", "echo page-of-$(hostname) > /www/index.html; echo started; echo to-stderr >&2; "
         "exec httpd -f -p 8080 -h /www"]


def wait_running(client, cid: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = client.container_status(cid).state
        if state == client.pb.CONTAINER_RUNNING:
            return
        assert time.monotonic() < deadline, f"container {cid} not running after {timeout} s (state {state})"
        time.sleep(0.05)


def read_log(path: str, want: str, timeout: float = 30) -> str:
    """The CRI log file once it holds `want` (the shim writes it as the container prints)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                text = f.read()
            if want in text:
                return text
        time.sleep(0.1)
    return text


def http_get(url: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_pod_is_ready_with_an_ip_and_its_hostname(cri_pods):
    pod = cri_pods.run("web", hostname="pod-web-1")
    status = cri_pods.client.pod_status(pod.id)
    assert status.state == cri_pods.client.pb.SANDBOX_READY
    assert status.runtime_handler == CRI_HANDLER
    assert ipaddress.ip_address(status.network.ip) in ipaddress.ip_network(cri.SUBNET)

    cid = cri_pods.start(pod, "app", ["sleep", "3600"])
    wait_running(cri_pods.client, cid)
    r = cri_pods.client.exec_sync(cid, ["hostname"])
    assert (r.exit_code, r.stdout.strip()) == (0, "pod-web-1")
    r = cri_pods.client.exec_sync(cid, ["cat", "/etc/hostname"])
    assert (r.exit_code, r.stdout.strip()) == (0, "pod-web-1")


def test_exec_sync_output_and_exit_codes(cri_pods):
    pod = cri_pods.run("exec")
    cid = cri_pods.start(pod, "app", ["sleep", "3600"])
    wait_running(cri_pods.client, cid)
    r = cri_pods.client.exec_sync(cid, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = cri_pods.client.exec_sync(cid, ["cat", "/no/such/file"])
    assert r.exit_code == 1 and "/no/such/file" in r.stderr and r.stdout == ""
    r = cri_pods.client.exec_sync(cid, ["true"])
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")


def test_host_reaches_the_pod_and_logs_hold_its_output(cri_pods):
    pod = cri_pods.run("net", hostname="pod-net")
    ip = cri_pods.client.pod_status(pod.id).network.ip
    cid = cri_pods.start(pod, "httpd", HTTPD)
    wait_running(cri_pods.client, cid)
    assert http_get(f"http://{ip}:8080/") == "page-of-pod-net\n"

    path = cri_pods.log_path(pod, "httpd")
    assert cri_pods.client.container_status(cid).log_path == path
    text = read_log(path, "to-stderr")
    lines = [line.split(" ", 3) for line in text.splitlines()]
    # CRI's log format: <RFC 3339 time> <stream> <P|F> <text>. stdout and stderr are
    # two pipes, read apart by the shim: their lines' order across streams is not kept.
    assert sorted((stream, tag, msg) for _, stream, tag, msg in lines) == \
        [("stderr", "F", "to-stderr"), ("stdout", "F", "started")], text


def test_stop_and_remove_leave_nothing(cri_pods, cri_engine):
    pod = cri_pods.run("gone")
    cid = cri_pods.start(pod, "app", ["sleep", "3600"])
    wait_running(cri_pods.client, cid)

    cri_pods.client.stop_container(cid, timeout=2)
    status = cri_pods.client.container_status(cid)
    assert status.state == cri_pods.client.pb.CONTAINER_EXITED
    cri_pods.client.remove_container(cid)
    cri_pods.remove(pod)
    assert [p.id for p in cri_pods.client.pods()] == []
    assert cri_engine.engine.leftovers() == []


def qemus_of(root: str) -> dict[str, int]:
    """Container id -> how many QEMUs its pid (a runv shim) runs, for the runtime's --root."""
    out = {}
    for cid in os.listdir(root):
        with open(os.path.join(root, cid, "state.json")) as f:
            out[cid] = len(vms_of(json.load(f)["pid"]))
    return out


def test_two_containers_of_a_pod_share_localhost_in_one_vm(cri_pods, cri_engine):
    pod = cri_pods.run("pair")
    server = cri_pods.start(pod, "server", HTTPD)
    wait_running(cri_pods.client, server)
    client = cri_pods.start(pod, "client", ["sleep", "3600"])
    wait_running(cri_pods.client, client)
    r = cri_pods.client.exec_sync(client, ["wget", "-qO-", "http://127.0.0.1:8080/"])
    assert (r.exit_code, r.stdout) == (0, "page-of-pair\n")
    vms = qemus_of(cri_engine.engine.runtime_root(CRI_HANDLER))
    assert vms == {pod.id: 1, server: 0, client: 0}, vms


def test_time_to_a_running_pod_runv_and_runc(cri_pods):
    """RunPodSandbox to a running one-container pod, with each handler (printed; no threshold)."""
    took = {}
    for handler in cri.HANDLERS:
        t0 = time.monotonic()
        pod = cri_pods.run(f"timing-{handler}", handler=handler)
        cid = cri_pods.start(pod, "app", ["sleep", "3600"])
        wait_running(cri_pods.client, cid)
        took[handler] = time.monotonic() - t0
        cri_pods.remove(pod)
    print("\nRunPodSandbox to a running one-container pod: " +
          ", ".join(f"{h} {s:.2f} s" for h, s in took.items()), file=sys.stderr)
