"""A small synchronous QMP client over an already connected socket."""
from __future__ import annotations

import json
import socket
import time
import weakref
from collections.abc import Sequence
from typing import Any

from runv.errors import QemuError


class _Monitor:
    """What is known of one monitor socket: past its handshake?, bytes read ahead,
    events not yet claimed. Shared by every QMP client made on that socket (the
    shim's, after template.restore used one), so that none waits for a second
    greeting or loses half a line."""

    def __init__(self) -> None:
        self.ready = False
        self.buf = bytearray()
        self.events: list[dict[str, Any]] = []

    def event(self, ev: dict[str, Any]) -> None:
        self.events.append(ev)
        del self.events[:-64]  # nobody claims most of them


_monitors: weakref.WeakKeyDictionary[socket.socket, _Monitor] = weakref.WeakKeyDictionary()


class QMP:
    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self._sock = sock
        self._timeout = timeout
        self._mon = _monitors.setdefault(sock, _Monitor())

    @property
    def events(self) -> list[dict[str, Any]]:
        """Asynchronous events seen and not yet claimed, oldest first."""
        return self._mon.events

    def _read(self) -> dict[str, Any]:
        buf = self._mon.buf
        while (end := buf.find(b"\n")) < 0:
            data = self._sock.recv(65536)
            if not data:
                raise QemuError("QEMU closed its monitor")
            buf += data
        line = bytes(buf[:end])
        del buf[:end + 1]
        msg = json.loads(line)
        if not isinstance(msg, dict):
            raise QemuError(f"QMP sent {type(msg).__name__}, not an object")
        return msg

    def _handshake(self) -> None:
        self._sock.settimeout(self._timeout)
        if self._mon.ready:
            return
        self._read()  # the greeting
        self._mon.ready = True
        self.execute("qmp_capabilities")

    def execute(self, command: str, fds: Sequence[int] = (), **arguments: Any) -> Any:
        """Run a command; `fds` go along with it (SCM_RIGHTS), for getfd."""
        if not self._mon.ready:
            self._handshake()
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        data = json.dumps(msg).encode() + b"\n"
        self._sock.settimeout(self._timeout)
        if fds:
            sent = socket.send_fds(self._sock, [data], list(fds))
            if sent < len(data):
                self._sock.sendall(data[sent:])
        else:
            self._sock.sendall(data)
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QemuError(f"QEMU {command}: {reply['error'].get('desc', reply['error'])}")
            if "event" in reply:
                self._mon.event(reply)

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        """The first event called `name`, seen already or arriving within `timeout` s."""
        if not self._mon.ready:
            self._handshake()
        deadline = time.monotonic() + timeout
        events = self._mon.events
        try:
            while True:
                for i, ev in enumerate(events):
                    if ev.get("event") == name:
                        return events.pop(i)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise QemuError(f"QEMU sent no {name} event within {timeout:.0f} s")
                self._sock.settimeout(left)
                try:
                    reply = self._read()
                except TimeoutError:
                    continue
                if "event" in reply:
                    self._mon.event(reply)
        finally:
            self._sock.settimeout(self._timeout)
