"""RUNV_TEMPLATES=shared (runv/qemu/sharedram.py): the VMs of one template map
its guest RAM from one sealed memfd, private, and each shim holds it. The
attacks: a QEMU that escaped its guest holds that memfd and tries to change
what the next VM restores; a guest that writes all its memory."""
from __future__ import annotations

import hashlib
import json
import mmap
import os

import pytest

MiB = 2**20


@pytest.fixture
def shared(runv):
    runv.env["RUNV_TEMPLATES"] = "shared"
    return runv


def start(runv, make_bundle, cid: str, argv=("sleep", "600"), config_edit=None) -> int:
    r = runv("run", "-d", "--bundle", make_bundle(list(argv), config_edit=config_edit), cid, detached=True)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(runv.root, cid, "state.json")) as f:
        state = json.load(f)
    assert state["shared_ram"] is True
    return state["qemu_pid"]


def ram_fd(pid: int) -> str:
    """/proc/<pid>/fd/<n> of the shared RAM's memfd in that process."""
    for n in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{n}").startswith("/memfd:runv-ram-"):
                return f"/proc/{pid}/fd/{n}"
        except OSError:
            continue
    raise AssertionError(f"process {pid} holds no shared RAM")


def digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def test_vms_of_a_template_share_one_sealed_copy_of_its_ram(shared, make_bundle):
    try:
        qemus = [start(shared, make_bundle, f"shr{i}") for i in range(2)]
        inodes = {os.stat(ram_fd(q)).st_ino for q in qemus}
        assert len(inodes) == 1, "two VMs of one template map two copies of its RAM"
        shims = [json.load(open(os.path.join(shared.root, f"shr{i}", "state.json")))["pid"] for i in range(2)]
        assert {os.stat(ram_fd(s)).st_ino for s in shims} == inodes  # each shim holds it
        for q in qemus:
            with open(f"/proc/{q}/maps") as f:
                assert any("/memfd:runv-ram-" in line and " rw-p " in line for line in f), \
                    "the guest RAM is not a private mapping of the memfd"
        r = shared("exec", "shr1", "echo", "hi")
        assert r.returncode == 0 and r.stdout == b"hi\n", r.stderr
    finally:
        for i in range(2):
            shared("delete", "-f", f"shr{i}")


def test_an_escaped_qemu_cannot_change_what_the_next_vm_restores(shared, make_bundle):
    """QEMU's own fd of the memfd, reopened read-write as QEMU can: every way of
    writing it is refused, and a guest that fills its memory writes only its
    own copies."""
    try:
        qemu = start(shared, make_bundle, "shra")
        path = ram_fd(qemu)
        before = digest(path)
        fd = os.open(path, os.O_RDWR)
        try:
            with pytest.raises(PermissionError):
                os.pwrite(fd, b"\xcc" * 4096, 0x1000000)
            with pytest.raises(PermissionError):
                os.ftruncate(fd, 4096)
            with pytest.raises(PermissionError):
                os.posix_fallocate(fd, os.fstat(fd).st_size, 4096)  # grow
            with pytest.raises(PermissionError):
                mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            import fcntl
            with pytest.raises(PermissionError):
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, 0)  # sealed for good: no seal can go either
            punch = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            assert libc.fallocate(fd, punch, ctypes.c_long(0), ctypes.c_long(16 * MiB)) == -1
            assert ctypes.get_errno() == 1  # EPERM
        finally:
            os.close(fd)
        r = shared("exec", "shra", "sh", "-c",
                   "dd if=/dev/zero bs=1M count=80 2>/dev/null | tr '\\0' x > /dev/shm/fill; echo done")
        assert r.returncode == 0 and r.stdout == b"done\n", r.stderr
        assert digest(path) == before
        shared("delete", "-f", "shra")
        # No holder is left: the next VM gets a new sealed copy, from the file, and runs.
        start(shared, make_bundle, "shrb")
        r = shared("exec", "shrb", "echo", "ok")
        assert r.returncode == 0 and r.stdout == b"ok\n", r.stderr
    finally:
        shared("delete", "-f", "shra")
        shared("delete", "-f", "shrb")


def test_update_down_caps_the_guest_without_the_balloon(shared, make_bundle):
    """QEMU 7.2 cannot give back pages of a private file mapping: a lower limit
    goes on the guest cgroup, and the balloon stays (no error storm in QEMU's log)."""
    try:
        start(shared, make_bundle, "shru",
              config_edit=lambda c: c["linux"]["namespaces"].append({"type": "cgroup"}))
        r = shared("update", "--memory", str(64 * MiB), "shru")
        assert r.returncode == 0, r.stderr
        r = shared("exec", "shru", "cat", "/sys/fs/cgroup/memory.max")
        assert r.returncode == 0 and int(r.stdout) == 64 * MiB, (r.stdout, r.stderr)
        with open(os.path.join(shared.root, "shru", "qemu.log"), "rb") as f:
            assert b"fallocate" not in f.read()
    finally:
        shared("delete", "-f", "shru")
