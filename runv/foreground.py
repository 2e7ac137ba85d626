"""What `run` and `exec` do while they wait in the foreground for a process:
forward the signals a user sends to it, and put their terminal in raw mode
when the process has a tty (the guest's pty does the cooking)."""
from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)


def forward_signals(send: Callable[[int], None]) -> None:
    """From now on, each forwarded signal that reaches us is passed to `send`."""
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, lambda signo, frame: send(signo))


@contextlib.contextmanager
def raw_tty(enabled: bool, fd: int = 0) -> Iterator[None]:
    """`fd`'s terminal in raw mode for the duration (when `enabled`), restored after."""
    if not enabled:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
