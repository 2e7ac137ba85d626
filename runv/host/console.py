"""The host side of a container terminal: the pty whose master goes to the
engine over --console-socket (SCM_RIGHTS), as runc does."""
from __future__ import annotations

import array
import fcntl
import os
import socket
import struct
import termios
import tty

from runv.errors import InvalidArgument


def open_for_socket(path: str) -> int:
    """Make a pty, send its master over the unix socket at `path`, return the slave.

    The slave is put in raw mode: line discipline happens in the guest's pty.
    """
    master, slave = os.openpty()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            name = os.ttyname(slave).encode()
            s.sendmsg([name], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [master]))])
    except OSError as e:
        os.close(slave)
        raise InvalidArgument(f"console socket {path}: {e.strerror}") from None
    finally:
        os.close(master)
    tty.setraw(slave)
    return slave


def winsize(fd: int) -> tuple[int, int]:
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        return rows, cols
    except OSError:
        return 0, 0
