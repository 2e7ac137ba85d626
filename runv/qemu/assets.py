"""Where the guest kernel, the initramfs and QEMU are.

`make install` copies the cached build outputs to SHARE_DIR; RUNV_KERNEL,
RUNV_INITRD and RUNV_QEMU override each path (tests use them).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from runv.errors import QemuError

SHARE_DIR = "/usr/local/share/runv"


@dataclass(frozen=True)
class Assets:
    qemu: str
    kernel: str
    initrd: str


def find() -> Assets:
    qemu = os.environ.get("RUNV_QEMU") or shutil.which("qemu-system-x86_64") or ""
    kernel = os.environ.get("RUNV_KERNEL") or os.path.join(SHARE_DIR, "vmlinux")
    initrd = os.environ.get("RUNV_INITRD") or os.path.join(SHARE_DIR, "initramfs.cpio")
    return Assets(qemu, kernel, initrd)


def require() -> Assets:
    a = find()
    if not a.qemu or not os.access(a.qemu, os.X_OK):
        raise QemuError("qemu-system-x86_64 not found: install the qemu-system-x86 package")
    for what, path in (("guest kernel", a.kernel), ("initramfs", a.initrd)):
        if not os.path.isfile(path):
            raise QemuError(f"{what} {path} not found: run 'make install'")
    return a
