"""The VM's 9p exports: the rootfs, and each bind's source alone under its
basename. QEMU's jail builds them in its own mount namespace (runv.qemu.jail);
here they are only named, and checked once more after the hooks ran, so that a
source gone is one `runv: ...` error before QEMU starts."""
from __future__ import annotations

import os
import stat

from runv.errors import RunvError
from runv.oci.mounts import Bind
from runv.qemu.cmdline import Share


def exports(root_tag: str, rootfs: str, root_readonly: bool, binds: list[Bind]) -> list[Share]:
    """The Shares to export, the rootfs first (recursively, as it is)."""
    if not stat.S_ISDIR(_mode(rootfs, "root path")):
        raise RunvError(f"root path {rootfs}: not a directory")
    shares = [Share(root_tag, rootfs, root_readonly)]
    for b in binds:
        _mode(b.source, "mount source")
        shares.append(Share(b.tag, b.source, b.readonly, entry=b.name, recursive=b.recursive))
    return shares


def _mode(path: str, what: str) -> int:
    try:
        return os.stat(path).st_mode
    except OSError as e:
        raise RunvError(f"{what} {path}: {os.strerror(e.errno or 0)}") from None
