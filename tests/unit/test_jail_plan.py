"""QEMU's jail as planned (runv/qemu/jail.py) and its capped logs (runv/qemu/logs.py);
tests/integration/test_jail.py checks a jailed QEMU for real."""
import os
import shutil

import pytest

from runv.host import syscalls as sc
from runv.qemu import jail
from runv.qemu.cmdline import Machine, Share
from runv.qemu.logs import DROPPED, CappedLog

QEMU = shutil.which("qemu-system-x86_64")


@pytest.fixture
def machine(tmp_path):
    for name in ("vmlinux", "initrd"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "data").mkdir()
    return Machine(QEMU or "/usr/bin/qemu-system-x86_64", str(tmp_path / "vmlinux"), str(tmp_path / "initrd"),
                   devices=[Share("rootfs", str(tmp_path / "rootfs")), Share("b3", str(tmp_path / "data"), True)])


@pytest.mark.skipif(not QEMU, reason="no qemu-system-x86_64")
def test_qemu_sees_jail_paths_only(machine, tmp_path):
    j, jailed = jail.for_machine(machine, str(tmp_path / "jail"))
    argv = " ".join(jailed.argv())
    assert str(tmp_path) not in argv
    assert "path=/shares/rootfs," in argv and "path=/shares/b3," in argv
    assert jailed.kernel == "/vm/kernel" and jailed.initrd == "/vm/initrd"
    shares = {b.target: b for b in j.binds if b.target.startswith("/shares/")}
    assert shares["/shares/rootfs"].source == str(tmp_path / "rootfs") and not shares["/shares/rootfs"].readonly
    assert shares["/shares/b3"].readonly
    assert all(b.recursive for b in shares.values())
    assert {b.target for b in j.binds if b.device} == {"/dev/null", "/dev/zero", "/dev/urandom"}
    assert not any(b.source.startswith(("/etc", "/proc", "/sys", "/run", "/root", "/home")) for b in j.binds)


def test_kvm_adds_its_device(machine, tmp_path):
    if not QEMU:
        pytest.skip("no qemu-system-x86_64")
    import dataclasses

    j, _ = jail.for_machine(dataclasses.replace(machine, accel="kvm"), str(tmp_path / "jail"))
    assert "/dev/kvm" in {b.target for b in j.binds if b.device}


def test_mount_attributes():
    share = jail.Bind("/x", "/shares/x", directory=True, readonly=False, recursive=True)
    assert share.attributes() == sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC
    ro = jail.Bind("/x", "/shares/x", directory=True, readonly=True)
    assert ro.attributes() & sc.MOUNT_ATTR_RDONLY
    lib = jail.Bind("/lib/libc.so.6", "/lib/libc.so.6", directory=False, executable=True)
    assert not lib.attributes() & sc.MOUNT_ATTR_NOEXEC and lib.attributes() & sc.MOUNT_ATTR_NODEV
    null = jail.Bind("/dev/null", "/dev/null", directory=False, readonly=False, device=True)
    assert not null.attributes() & sc.MOUNT_ATTR_NODEV and null.attributes() & sc.MOUNT_ATTR_NOEXEC


@pytest.mark.skipif(not QEMU, reason="no qemu-system-x86_64")
def test_qemu_runtime_is_its_binary_libraries_modules_and_firmware():
    rt = jail._runtime(QEMU)
    targets = [b.target for b in rt.binds]
    assert targets[0] == os.path.realpath(QEMU)
    assert any(os.path.basename(t).startswith("libc.so") for t in targets)
    assert jail._interpreter(rt.qemu) in targets
    assert all(b.readonly for b in rt.binds)
    assert all(not b.directory or b.target.endswith("/qemu") for b in rt.binds)
    assert rt.library_path


def test_only_qemu_keeps_what_9p_needs():
    assert {0, 1, 3, 4} == jail.KEEP_CAPS  # CHOWN, DAC_OVERRIDE, FOWNER, FSETID


def test_capped_log_keeps_the_newest_half(tmp_path):
    path = str(tmp_path / "console.log")
    log = CappedLog(path, limit=1000)
    for i in range(300):
        log.write(f"line {i:04d}\n".encode())
    log.close()
    data = open(path, "rb").read()
    assert len(data) <= 1000
    assert data.startswith(DROPPED)
    assert data.endswith(b"line 0299\n")
    body = data[len(DROPPED):]
    assert body.startswith(b"line ") and all(len(ln) == 9 for ln in body.splitlines())  # whole lines


def test_capped_log_carries_on_from_an_existing_file(tmp_path):
    path = tmp_path / "qemu.log"
    path.write_bytes(b"x" * 900)
    log = CappedLog(str(path), limit=1000)
    log.write(b"y" * 200)
    log.close()
    assert len(path.read_bytes()) <= 1000 and path.read_bytes().endswith(b"y" * 200)
