"""A small synchronous QMP client over an already connected socket."""
from __future__ import annotations

import json
import socket
from typing import Any

from runv.errors import QemuError


class QMP:
    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self._timeout = timeout
        self._ready = False

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise QemuError("QEMU closed its monitor")
        return json.loads(line)

    def _handshake(self) -> None:
        self._sock.settimeout(self._timeout)
        self._read()  # the greeting
        self._ready = True
        self.execute("qmp_capabilities")

    def execute(self, command: str, **arguments: Any) -> Any:
        if not self._ready:
            self._handshake()
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self._sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QemuError(f"QEMU {command}: {reply['error'].get('desc', reply['error'])}")
            # asynchronous events (STOP, RESUME, ...) are not needed here
