"""runv/qemu/template.py without VMs: the key, the cache's rules, and the QMP
client's sharing of one monitor (tests/integration/test_template.py boots real ones)."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time

import pytest

from runv.qemu import template
from runv.qemu.cmdline import Machine, Share, Tap
from runv.qemu.qmp import QMP


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    out = {}
    for name in ("qemu", "vmlinux", "initrd"):
        p = tmp_path / name
        p.write_bytes(name.encode())
        out[name] = str(p)
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("RUNV_CACHE", str(tmp_path / "cache"))
    return str(tmp_path / "cache" / "templates")


def machine(files, *devices, **kw) -> Machine:
    return Machine(files["qemu"], files["vmlinux"], files["initrd"], devices=list(devices), **kw)


def test_key_follows_the_shape(files):
    key = template.template_key
    base = key(machine(files, Share("rootfs", "/x")))
    assert base == key(machine(files, Share("rootfs", "/y", readonly=True)))
    assert len({base, key(machine(files, Share("rootfs", "/x"), memory_mb=256)),
                key(machine(files, Share("rootfs", "/x"), cpus=2)),
                key(machine(files, Share("rootfs", "/x"), accel="kvm")),
                key(machine(files, Share("rootfs", "/x"), kernel_args="console=ttyS0 runv.debug")),
                key(machine(files, Share("rootfs", "/x"), Share("b0", "/z"))),
                key(machine(files, Share("rootfs", "/x")), port_name="x.y")}) == 7


def test_key_changes_with_the_kernel_file(files):
    m = machine(files, Share("rootfs", "/x"))
    before = template.template_key(m)
    os.utime(files["vmlinux"], ns=(1, 1))
    assert template.template_key(m) != before


def test_shares_and_nics_are_templated(files, cache):
    assert template.supported(machine(files, Share("rootfs", "/x"), Share("b0", "/y")))
    with_nic = machine(files, Share("rootfs", "/x"), Tap("t0", "02:00:00:00:00:01", 0, 9))
    assert template.supported(with_nic)
    # the NIC's MAC and tap are the container's, not the template's shape
    other = machine(files, Share("rootfs", "/x"), Tap("t7", "02:00:00:00:00:02", 0, 11))
    assert template.template_key(with_nic) == template.template_key(other)
    assert Tap("t0", "02:00:00:00:00:01", 0, 9).for_template().args() == [
        "-netdev", "hubport,id=net0,hubid=0", "-device", "virtio-net-device,netdev=net0,mac=02:72:75:6e:76:00"]


def test_existing_template_is_found_without_booting(files, cache):
    m = machine(files, Share("rootfs", "/x"))
    d = os.path.join(cache, template.template_key(m))
    os.makedirs(d)
    open(os.path.join(d, "state"), "w").close()
    assert template.ensure(m) == os.path.join(d, "state")


def test_a_recent_failure_is_not_retried(files, cache, monkeypatch):
    m = machine(files, Share("rootfs", "/x"))
    key = template.template_key(m)
    os.makedirs(cache)
    with open(os.path.join(cache, f"{key}.failed"), "w") as f:
        json.dump({"reason": "test"}, f)
    monkeypatch.setattr(template, "_make", lambda *a: pytest.fail("tried again"))
    assert template.ensure(m) is None
    old = time.time() - template.FAILED_TTL - 1
    os.utime(os.path.join(cache, f"{key}.failed"), (old, old))
    made = []
    monkeypatch.setattr(template, "_make", lambda *a: made.append(a))
    template.ensure(m)
    assert made


def test_busy_maker_means_boot_now(files, cache, monkeypatch):
    m = machine(files, Share("rootfs", "/x"))
    key = template.template_key(m)
    os.makedirs(cache)
    fd = os.open(os.path.join(cache, f"{key}.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    monkeypatch.setattr(template, "_make", lambda *a: pytest.fail("made while locked"))
    try:
        assert template.ensure(m) is None
    finally:
        os.close(fd)


def test_failure_to_make_is_recorded(files, cache, monkeypatch):
    m = machine(files, Share("rootfs", "/x"))

    def boom(*a):
        raise RuntimeError("no luck")

    monkeypatch.setattr(template, "_make", boom)
    assert template.ensure(m) is None
    with open(os.path.join(cache, f"{template.template_key(m)}.failed")) as f:
        assert "no luck" in json.load(f)["reason"]


def test_discard_then_made_again(files, cache, monkeypatch):
    """A template that fails to restore (truncated, corrupt) goes, and the next
    container of its shape makes it again instead of booting for FAILED_TTL."""
    m = machine(files, Share("rootfs", "/x"))
    key = template.template_key(m)
    d = os.path.join(cache, key)
    os.makedirs(d)
    open(os.path.join(d, "state"), "w").close()
    template.discard(os.path.join(d, "state"), "broken")
    assert not os.path.exists(d) and not os.path.exists(os.path.join(cache, f"{key}.failed"))
    made = []

    def make(machine, port_name, base, key):
        made.append(key)
        os.makedirs(os.path.join(base, key))
        open(os.path.join(base, key, "state"), "w").close()

    monkeypatch.setattr(template, "_make", make)
    assert template.ensure(m) == os.path.join(d, "state") and made == [key]


# --- QMP: one monitor, two clients; fds; events ---------------------------------------

def fake_qemu(sock: socket.socket, got_fds: list) -> None:
    f = sock.makefile("rb")
    sock.sendall(b'{"QMP": {"version": {}}}\n')
    for line in f:
        cmd = json.loads(line)["execute"]
        if cmd == "qmp_capabilities":
            sock.sendall(b'{"return": {}}\n')
        elif cmd == "query-status":
            # an event first, split across two writes, then the reply
            sock.sendall(b'{"event": "RES')
            time.sleep(0.01)
            sock.sendall(b'UME", "data": {}}\n{"return": {"status": "running"}}\n')
        elif cmd == "quit":
            sock.sendall(b'{"return": {}}\n')
            return


def test_qmp_clients_share_one_monitor():
    a, b = socket.socketpair()
    got: list = []
    t = threading.Thread(target=fake_qemu, args=(b, got), daemon=True)
    t.start()
    first = QMP(a)
    assert first.execute("query-status") == {"status": "running"}
    second = QMP(a)  # as the shim makes its own after template.restore
    assert second.wait_event("RESUME", 1)["event"] == "RESUME"
    assert second.execute("quit") == {}
    t.join(2)
    a.close()
    b.close()


def test_qmp_passes_fds():
    a, b = socket.socketpair()
    r, w = os.pipe()
    received = []

    def server():
        b.sendall(b'{"QMP": {}}\n')
        b.recv(1000)  # qmp_capabilities
        b.sendall(b'{"return": {}}\n')
        msg, fds, _, _ = socket.recv_fds(b, 1000, 4)
        received.append((json.loads(msg), fds))
        b.sendall(b'{"return": {}}\n')

    t = threading.Thread(target=server, daemon=True)
    t.start()
    QMP(a).execute("getfd", fds=[w], fdname="x")
    t.join(2)
    (msg, fds), = received
    assert msg == {"execute": "getfd", "arguments": {"fdname": "x"}} and len(fds) == 1
    os.write(fds[0], b"hi")
    assert os.read(r, 2) == b"hi"
    for fd in (r, w, *fds):
        os.close(fd)
    a.close()
    b.close()
