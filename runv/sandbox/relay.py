"""Relay one container process's stdio between host fds and its guest stream.

Flow control follows docs/protocol.md: at most WINDOW unacknowledged stdin bytes
go to the guest, and guest output is acknowledged only once it has been written
to its host fd, so neither side buffers more than a window. The guest is not
trusted to keep to its window: output beyond it, or an ACK of stdin never sent,
is a ProtocolError, so the buffers here never exceed WINDOW bytes per stream.
Regular files and /dev/null cannot be polled; they are read and written directly.
"""
from __future__ import annotations

import os
import select
import selectors
import stat
from collections.abc import Callable
from typing import Any

from runv.agent import protocol as P
from runv.agent.link import Handler, Link, Watch
from runv.agent.protocol import Msg

CHUNK = 4096  # a pipe that polls writable takes this much without blocking


def _unwatched(fileobj: Any, events: int, handler: Handler | None) -> None:
    """The watch of a relay not attached yet: nothing to watch with."""


def _pollable(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) and os.isatty(fd)


def _writable_now(fd: int) -> bool:
    """Whether a CHUNK write to `fd` cannot block, asked right before the write."""
    p = select.poll()
    p.register(fd, select.POLLOUT)
    return any(ev & (select.POLLOUT | select.POLLERR | select.POLLHUP) for _, ev in p.poll(0))


def _open_fd(fd: int) -> int | None:
    try:
        os.fstat(fd)
        return fd
    except OSError:
        return None


class Relay:
    def __init__(self, stdin: int | None, stdout: int | None, stderr: int | None,
                 terminal: bool = False) -> None:
        self.terminal = terminal
        self.owned = {fd for fd in (stdin, stdout, stderr) if fd is not None}
        self.stdin = stdin
        self.out: dict[int, int | None] = {1: stdout, 2: stderr}
        self.buf: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        self.unacked = 0
        self.link: Link  # set by attach()
        self.watch: Watch = _unwatched
        self.stream = 0
        self._drained: Callable[[], None] | None = None

    @classmethod
    def for_init(cls, config: dict[str, Any], console_socket: str | None) -> Relay:
        terminal = bool((config.get("process") or {}).get("terminal"))
        if terminal and console_socket:
            from runv.host.console import open_for_socket

            slave = open_for_socket(console_socket)
            return cls(slave, os.dup(slave), None, terminal=True)
        return cls(_open_fd(0), _open_fd(1), _open_fd(2), terminal=terminal)

    @classmethod
    def for_fds(cls, names: list[str], fds: list[int], terminal: bool) -> Relay:
        """A process's stdio handed over by a client (`runv exec`, a light shim):
        its pty, or its stdin, stdout and stderr, each named."""
        stdio = dict(zip(names, fds, strict=False))
        if terminal:
            pty = stdio.get("pty")
            return cls(pty, os.dup(pty) if pty is not None else None, None, terminal=True)
        return cls(stdio.get("stdin"), stdio.get("stdout"), stdio.get("stderr"))

    def attach(self, link: Link, watch: Watch, stream: int) -> None:
        """Relay this process's stdio on `stream` of the agent link; `watch` is the event loop's."""
        self.link, self.watch, self.stream = link, watch, stream
        if self.terminal and self.stdin is not None and os.isatty(self.stdin):
            from runv.host.console import winsize

            rows, cols = winsize(self.stdin)
            if rows and cols:
                link.send(Msg.WINSIZE, stream, P.winsize_payload(rows, cols))
        self._watch_stdin()

    # --- stdin: host -> guest ----------------------------------------------

    def _watch_stdin(self) -> None:
        if self.stdin is None:
            return
        want = self.unacked < P.WINDOW
        if not _pollable(self.stdin):
            while self.stdin is not None and self.unacked < P.WINDOW:
                self._read_stdin(selectors.EVENT_READ)
            return
        self.watch(self.stdin, selectors.EVENT_READ if want else 0, self._read_stdin)

    def _read_stdin(self, mask: int) -> None:
        stdin = self.stdin
        if stdin is None:
            return
        try:
            data = os.read(stdin, min(P.MAX_PAYLOAD, P.WINDOW - self.unacked))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.watch(stdin, 0, None) if _pollable(stdin) else None
            self.stdin = None
            self.link.send(Msg.STDIN, self.stream, b"")
            return
        self.unacked += len(data)
        self.link.send(Msg.STDIN, self.stream, data)
        if self.unacked >= P.WINDOW and _pollable(stdin):
            self.watch(stdin, 0, None)

    def acked(self, which: int, nbytes: int) -> None:
        if which != 0:
            raise P.ProtocolError(f"ACK of output stream {which} on stream {self.stream}")
        if nbytes > self.unacked:
            raise P.ProtocolError(f"ACK of {nbytes} stdin bytes on stream {self.stream}, "
                                  f"{self.unacked} unacknowledged")
        self.unacked -= nbytes
        self._watch_stdin()

    # --- stdout and stderr: guest -> host ------------------------------------

    def output(self, which: int, data: bytes) -> None:
        fd = self.out.get(which)
        if not data:
            return  # end of stream; the fd closes when the shim exits
        # What the guest may have sent but not had acknowledged: what is still
        # buffered here, and the ACKs not yet sent to it.
        unacked = len(self.buf[which]) + self.link.acks.get((self.stream, which), 0)
        if unacked + len(data) > P.WINDOW:
            raise P.ProtocolError(f"stream {self.stream} sent {unacked + len(data)} bytes of "
                                  f"output past its window of {P.WINDOW}")
        if fd is None:
            self.link.ack(self.stream, which, len(data))
            return
        self.buf[which] += data
        if _pollable(fd):
            self.watch(fd, selectors.EVENT_WRITE, lambda mask: self._write(which))
        else:
            self._write(which, all_of_it=True)

    def _write(self, which: int, all_of_it: bool = False) -> None:
        fd, buf = self.out[which], self.buf[which]
        while buf and fd is not None:
            if not all_of_it and not _writable_now(fd):
                break  # stdout and stderr may be one pipe: the other stream's write filled it
            try:
                n = os.write(fd, buf[: len(buf) if all_of_it else CHUNK])
            except BlockingIOError:
                break
            except OSError:
                n = len(buf)  # the reader is gone: drop the output, keep the guest going
            del buf[:n]
            self.link.ack(self.stream, which, n)
            if not all_of_it:
                break
        if not buf and fd is not None and _pollable(fd):
            self.watch(fd, 0, None)
        if self._drained and not any(self.buf.values()):
            then, self._drained = self._drained, None
            then()

    def when_drained(self, then: Callable[[], None]) -> None:
        """Call `then` once the buffered output is written (now if there is none)."""
        if any(self.buf.values()):
            self._drained = then
        else:
            then()

    def finish(self) -> None:
        """The process has exited: no more stdin goes to it."""
        if self.stdin is not None:
            if _pollable(self.stdin):
                self.watch(self.stdin, 0, None)
            self.stdin = None

    def close(self) -> None:
        """Close the fds this relay owns (an exec's, handed over by `runv exec`)."""
        for fd in self.owned:
            try:
                self.watch(fd, 0, None)
                os.close(fd)
            except (OSError, ValueError, KeyError):
                pass
        self.stdin = None
        self.out = {1: None, 2: None}

    def flush(self) -> None:
        for which in (1, 2):
            fd, buf = self.out[which], self.buf[which]
            if fd is None:
                continue
            try:
                os.set_blocking(fd, True)
                while buf:
                    del buf[: os.write(fd, buf)]
            except OSError:
                buf.clear()
