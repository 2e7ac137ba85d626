"""QEMU's two logs, written by the shim, not by QEMU: the guest's serial console
(console.log, from a socket) and QEMU's own stdout and stderr (qemu.log, from
a pipe). QEMU in its jail has no path to either, and each file stays under
LIMIT bytes: past it, the older half goes, so that a guest printing forever
fills no disk and the last lines (what an error message quotes) are kept.

A thread drains both while QEMU runs, so that the guest's console never waits
on the shim's main loop; it ends when QEMU has closed both (it exited).
"""
from __future__ import annotations

import os
import selectors
import threading

LIMIT = 1 << 20
CHUNK = 65536
DROPPED = b"[runv: earlier output dropped]\n"


class CappedLog:
    """An append-only file that keeps its last LIMIT/2 to LIMIT bytes."""

    def __init__(self, path: str, limit: int = LIMIT) -> None:
        self.path = path
        self.limit = limit
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.size = os.fstat(self.fd).st_size

    def write(self, data: bytes) -> None:
        if self.size + len(data) <= self.limit:
            os.write(self.fd, data)
            self.size += len(data)
            return
        old = os.pread(self.fd, self.limit, 0)
        tail = (old + data)[-(self.limit // 2 - len(DROPPED)):]
        newline = tail.find(b"\n", 0, 4096)
        tail = DROPPED + (tail[newline + 1:] if newline >= 0 else tail)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, tail)
        self.size = len(tail)

    def close(self) -> None:
        os.close(self.fd)


class Drain(threading.Thread):
    """Copies each source fd into its log until the source's end closes; then closes both."""

    def __init__(self, sources: dict[int, CappedLog]) -> None:
        super().__init__(name="qemu-logs", daemon=True)
        self.sources = sources

    def run(self) -> None:
        with selectors.DefaultSelector() as sel:
            for fd in self.sources:
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map():
                for key, _ in sel.select():
                    fd = key.fd
                    try:
                        data = os.read(fd, CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        try:
                            self.sources[fd].write(data)
                        except OSError:
                            pass  # the state dir went (delete --force): keep draining
                        continue
                    sel.unregister(fd)
                    os.close(fd)
                    self.sources[fd].close()
