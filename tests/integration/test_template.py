"""VM templates (runv/qemu/template.py): make one for a machine shape, restore it
twice at once with different 9p shares, and run a container in each through the
agent protocol. Uses the guest built from this tree (kernel/build-*.sh, cached),
so that the agent under test is the current one."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time

import pytest
from agent_driver import Client

from runv.agent import protocol as P
from runv.agent.protocol import Msg
from runv.agent.records import create_records
from runv.oci import mounts
from runv.oci.default_spec import default_config
from runv.qemu import template
from runv.qemu.cmdline import Machine, Share
from runv.sandbox.shares import exports

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def guest() -> dict[str, str]:
    from runv.qemu.accel import choose
    from runv.qemu.assets import Assets

    def build(script: str) -> str:
        return subprocess.run([os.path.join(REPO, "kernel", script)], check=True,
                              stdout=subprocess.PIPE, text=True).stdout.strip()

    qemu = shutil.which("qemu-system-x86_64")
    assert qemu, "qemu-system-x86_64 is missing: `make deps` installs it"
    a = Assets(qemu, build("build-kernel.sh"), build("build-initramfs.sh"))
    return {"qemu": a.qemu, "kernel": a.kernel, "initrd": a.initrd, "accel": choose(a).accel}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> str:
    path = str(tmp_path / "cache")
    monkeypatch.setenv("RUNV_CACHE", path)
    return os.path.join(path, "templates")


def machine(guest: dict[str, str], *devices, **kw) -> Machine:
    return Machine(guest["qemu"], guest["kernel"], guest["initrd"], accel=guest["accel"],
                   devices=list(devices), **kw)


# --- a shape QEMU cannot boot ---------------------------------------------------------

def test_failure_is_remembered(guest, cache, tmp_path):
    bogus = tmp_path / "vmlinux"
    bogus.write_bytes(b"not a kernel")
    m = machine(guest, Share("rootfs", str(tmp_path)))
    m.kernel = str(bogus)
    assert template.ensure(m) is None
    key = template.template_key(m)
    with open(os.path.join(cache, f"{key}.failed")) as f:
        assert json.load(f)["reason"]
    t0 = time.monotonic()
    assert template.ensure(m) is None  # not tried again
    assert time.monotonic() - t0 < 0.1
    assert [n for n in os.listdir(cache) if n.startswith(".")] == []  # no staging dir left


# --- the real thing --------------------------------------------------------------------

SCRIPT = ("cat /file; cat /data/note; date +%s; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' '; "
          "u0=$(cut -d' ' -f1 /proc/uptime); sleep 1; u1=$(cut -d' ' -f1 /proc/uptime); echo $u0 $u1; "
          "touch /probe 2>/dev/null && echo rw || echo ro")


def bundle(tmp_path, rootfs_template, name: str, readonly: bool) -> tuple[str, dict, mounts.Plan]:
    """A rootfs whose /file names it, and a bind mount of a host dir on /data."""
    b = tmp_path / name
    shutil.copytree(rootfs_template, b / "rootfs", symlinks=True)
    (b / "rootfs" / "file").write_text(f"I am {name}\n")
    (b / "rootfs" / "data").mkdir()
    (b / "data").mkdir()
    (b / "data" / "note").write_text(f"note of {name}\n")
    config = default_config()
    config["root"]["readonly"] = readonly
    config["process"].update({"terminal": False, "args": ["sh", "-c", SCRIPT]})
    config["mounts"].append({"destination": "/data", "type": "bind", "source": str(b / "data"),
                             "options": ["rbind", "ro"]})
    return str(b), config, mounts.plan(config, str(b))


def test_template_restored_twice_at_once(guest, cache, tmp_path, rootfs_template):
    # beta's root is read-only, as a share too (as shim.boot has it). The template
    # is made from beta's machine, so alpha's writable share differs from it.
    bundles = [bundle(tmp_path, rootfs_template, name, ro) for name, ro in (("alpha", False), ("beta", True))]
    shapes = [machine(guest, *exports(P.SHARE_ROOT_TAG, os.path.join(b, "rootfs"), config["root"]["readonly"],
                                      plan.binds))
              for b, config, plan in bundles]
    assert template.template_key(shapes[0]) == template.template_key(shapes[1])

    # Two makers at once: one makes it, the other boots (None) or finds it made.
    t0 = time.monotonic()
    found: list = [None, None]
    makers = [threading.Thread(target=lambda i=i: found.__setitem__(i, template.ensure(shapes[1])))
              for i in range(2)]
    for t in makers:
        t.start()
    for t in makers:
        t.join(120)
    made = time.monotonic() - t0
    path = found[0] or found[1]
    assert path and os.path.isfile(path), os.listdir(cache)
    assert all(p in (None, path) for p in found)
    assert sorted(os.listdir(cache)) == sorted([os.path.basename(os.path.dirname(path)),
                                                os.path.basename(os.path.dirname(path)) + ".lock"])
    with open(os.path.join(os.path.dirname(path), "meta.json")) as f:
        meta = json.load(f)
    assert meta["size"] == os.path.getsize(path) and meta["restore_s"] > 0
    print(f"template made in {made:.2f} s: {meta}")
    assert template.ensure(shapes[0]) == path  # found, not made again

    vms = []
    try:
        for i, m in enumerate(shapes):
            state_dir = tmp_path / f"vm{i}"
            state_dir.mkdir()
            vms.append(template.restore(m, path, P.PORT_NAME, str(state_dir)))
        results: list = [None, None]

        def drive(i: int) -> None:
            try:
                results[i] = run_container(vms[i], bundles[i][1], bundles[i][2])
            except BaseException as e:  # noqa: BLE001 - reported below
                results[i] = e

        threads = [threading.Thread(target=drive, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        outs = []
        for i, r in enumerate(results):
            assert not isinstance(r, BaseException) and r is not None, f"vm{i}: {r!r}"
            status, out, err, took, shutdown_code = r
            assert status == 0, f"vm{i}: status {status}, stderr {err!r}, out {out!r}"
            name = ("alpha", "beta")[i]
            lines = out.decode().splitlines()
            assert lines[0] == f"I am {name}" and lines[1] == f"note of {name}", out
            guest_now = int(lines[2])
            assert abs(guest_now - time.time()) < 5, f"guest clock {guest_now} vs host {time.time():.0f}"
            u0, u1 = map(float, lines[4].split())
            assert 0.95 <= u1 - u0 < 3, f"sleep 1 took {u1 - u0:.2f} s of guest uptime"
            assert 1.0 <= took < 10, f"START to EXIT took {took:.2f} s"
            assert lines[5] == ("ro" if name == "beta" else "rw"), out
            assert shutdown_code == 0, f"vm{i}: QEMU exited with {shutdown_code}"
            outs.append(lines[3])
        assert outs[0] != outs[1], "two VMs restored from one template share their random numbers"
    finally:
        for vm in vms:
            vm.kill()
            vm.agent.close()
            vm.qmp.close()
            os.close(vm.pidfd)


def run_container(vm, config: dict, plan: mounts.Plan) -> tuple[int, bytes, bytes, float, int | None]:
    c = Client(vm.agent)
    ready = c.wait_frame(30)
    assert ready.type == Msg.READY and P.parse_ready(ready.payload)[0] == P.VERSION, ready
    f = c.request(Msg.CREATE, 1, create_records(config, plan.mounts, plan.guest_dirs))
    assert f.type == Msg.OK, P.parse_error(f.payload)
    t0 = time.monotonic()
    f = c.request(Msg.START, 1)
    assert f.type == Msg.OK, P.parse_error(f.payload)
    status = c.wait_exit(1, 60)
    took = time.monotonic() - t0
    c.send(Msg.SHUTDOWN)
    c.pump(0.1)
    code = vm.proc.wait(20)
    return status, bytes(c.out[1][1]), bytes(c.out[1][2]), took, code


def test_a_template_is_saved_with_its_balloon_inflated(guest, cache, tmp_path):
    """A restored VM starts with the memory its Balloon gives it, before anyone
    sets the balloon: its guest has no inflating left to do (about 0.1 s of its
    CPU under TCG, at each container's start)."""
    from runv.qemu.cmdline import Balloon
    from runv.qemu.qmp import QMP

    share = tmp_path / "share"
    share.mkdir()
    m = machine(guest, Share(P.SHARE_ROOT_TAG, str(share), readonly=True), Balloon(96), memory_mb=256)
    path = template.ensure(m, wait=True)
    assert path, os.listdir(cache)
    state_dir = tmp_path / "vm"
    state_dir.mkdir()
    vm = template.restore(m, path, P.PORT_NAME, str(state_dir))
    try:
        assert int(QMP(vm.qmp, timeout=10).execute("query-balloon")["actual"]) == 96 * 2**20
        assert template.template_key(m) != template.template_key(
            machine(guest, Share(P.SHARE_ROOT_TAG, str(share), readonly=True), Balloon(128), memory_mb=256))
    finally:
        vm.kill()
        vm.agent.close()
        vm.qmp.close()
        os.close(vm.pidfd)
