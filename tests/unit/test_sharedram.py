"""runv.qemu.sharedram without a VM: the template's RAM saved sparse, a sealed
copy made from it, and a live holder's copy found again (or refused)."""
from __future__ import annotations

import os

import pytest

from runv.qemu import sharedram

KEY = "k0123456789abcdef012"
SIZE = 8 << 20


@pytest.fixture
def template_dir(tmp_path):
    d = tmp_path / KEY
    d.mkdir()
    ram = sharedram.blank(SIZE, KEY)
    try:
        os.pwrite(ram, b"kernel text", 0x1000)
        os.pwrite(ram, b"\x7f" * 8192, 5 << 20)
        sharedram.save(ram, str(d / sharedram.RAM))
    finally:
        os.close(ram)
    return str(d)


def test_saved_sparse_and_copied_sealed(template_dir):
    path = os.path.join(template_dir, sharedram.RAM)
    assert os.stat(path).st_size == SIZE and os.stat(path).st_blocks * 512 < 1 << 20
    fd = sharedram.obtain(template_dir, KEY)
    try:
        assert sharedram.sealed(fd, KEY, SIZE)
        assert os.pread(fd, 11, 0x1000) == b"kernel text" and os.pread(fd, 8192, 5 << 20) == b"\x7f" * 8192
        assert os.pread(fd, 16, 0) == bytes(16)
        rw = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
        try:
            with pytest.raises(PermissionError):
                os.pwrite(rw, b"x", 0)
        finally:
            os.close(rw)
    finally:
        os.close(fd)


def test_a_live_holders_copy_is_found_again(template_dir):
    first = sharedram.obtain(template_dir, KEY)
    try:
        sharedram.hold(template_dir, first)
        again = sharedram.obtain(template_dir, KEY)
        try:
            assert os.fstat(again).st_ino == os.fstat(first).st_ino
        finally:
            os.close(again)
    finally:
        os.close(first)


def test_a_dead_holder_is_forgotten(template_dir):
    holders = os.path.join(template_dir, sharedram.HOLDERS)
    os.makedirs(holders)
    stale = os.path.join(holders, f"{2**22 + 7}.12345")  # beyond pid_max's default: no such process
    with open(stale, "w") as f:
        f.write("3")
    fd = sharedram.obtain(template_dir, KEY)
    os.close(fd)
    assert not os.path.exists(stale)


def test_a_holder_fd_that_is_not_the_sealed_ram_is_not_taken(template_dir):
    """A record naming an fd of something else (an unsealed memfd of the same name, a file)."""
    fake = sharedram.blank(SIZE, KEY)  # right name and size, no seals
    try:
        sharedram.hold(template_dir, fake)
        fd = sharedram.obtain(template_dir, KEY)
        try:
            assert os.fstat(fd).st_ino != os.fstat(fake).st_ino and sharedram.sealed(fd, KEY, SIZE)
        finally:
            os.close(fd)
    finally:
        os.close(fake)
