"""Files written whole or not at all (a temp file beside the target, renamed
into place, so that a reader never sees half of one), and skeletons of mount
points removed without ever descending into a mount."""
from __future__ import annotations

import os


def write_atomic(path: str, text: str, fsync: bool = False) -> None:
    """Replace `path` with `text`; with `fsync`, the data is on disk before the rename."""
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove_skeleton(base: str, opaque: tuple[str, ...] = ()) -> bool:
    """Delete a skeleton of mount points at `base` (runv.sandbox.staging's
    shares): `base/<entry>/<name>`, `base/<entry>` and `base`, never descending
    into an `opaque` entry; True when it is gone.

    Only rmdir and unlink, at those depths: where a mount is still visible (a
    caller inside the shim's namespace), they fail (EBUSY, ENOTEMPTY) instead
    of deleting what the mount shows."""
    try:
        entries = os.listdir(base)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    ok = True
    for tag in entries:
        top = os.path.join(base, tag)
        try:
            if os.path.isdir(top) and not os.path.islink(top):
                for name in os.listdir(top) if tag not in opaque else ():
                    _remove_one(os.path.join(top, name))
            _remove_one(top)
        except OSError:
            ok = False
    try:
        os.rmdir(base)
    except OSError:
        return False
    return ok


def _remove_one(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    else:
        os.unlink(path)
