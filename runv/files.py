"""Files written whole or not at all (a temp file beside the target, renamed
into place, so that a reader never sees half of one)."""
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
