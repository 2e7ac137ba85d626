"""Facts about host processes, read from /proc."""
from __future__ import annotations

import os


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def alive(pid: int, started: int | None) -> bool:
    """Whether `pid` is still the process that started at `started` (a reused pid is not)."""
    if pid <= 0:
        return False
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def wait_gone(pid: int, started: int | None, timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while alive(pid, started):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def kill(pid: int, signo: int, started: int | None) -> bool:
    """Signal `pid` only if it is still the process that started at `started`:
    the check is made on a pidfd, so the pid cannot be reused between the check
    and the signal. Whether the signal was sent."""
    import signal

    if pid <= 0 or started is None:
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # gone (ESRCH)
        return False
    try:
        if start_time(pid) != started:
            return False  # another process has the pid now, or a zombie
        signal.pidfd_send_signal(fd, signo)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)
