"""What a long-lived process forked by `runv create` (the shim, a light shim)
does first and last: leave the caller's session and fds, ignore the signals
meant for a terminal, and report on the sync pipe how its start went."""
from __future__ import annotations

import json
import os
import signal
from typing import Any

IGNORED_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGTTOU, signal.SIGTTIN)


def detach(keep: set[int]) -> None:
    os.setsid()
    for sig in IGNORED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    close_fds(keep)


def close_fds(keep: set[int]) -> None:
    """Every inherited fd above stdio but `keep`."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def null_stdio() -> None:
    """fds 0-2 on /dev/null: the engine reads create's stdio until it closes."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def report(fd: int, msg: dict[str, Any]) -> None:
    try:
        os.write(fd, json.dumps(msg).encode() + b"\n")
        os.close(fd)
    except OSError:
        pass
