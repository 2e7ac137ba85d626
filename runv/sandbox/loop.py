"""The shim's event loop: one selector, handlers called with the ready events,
and a wake-up at the nearest deadline."""
from __future__ import annotations

import selectors
import time
from collections.abc import Callable
from typing import Any

Handler = Callable[[int], None]


class Loop:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()

    def watch(self, fileobj: Any, events: int, handler: Handler | None) -> None:
        """Watch `fileobj` for `events` (0 = stop watching)."""
        try:
            key = self.sel.get_key(fileobj)
        except (KeyError, ValueError):
            key = None
        if not events:
            if key:
                self.sel.unregister(fileobj)
        elif key:
            self.sel.modify(fileobj, events, handler)
        else:
            self.sel.register(fileobj, events, handler)

    def run_once(self, deadline: float | None) -> None:
        """Wait for events until `deadline` (monotonic; None: no limit) and handle them."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        for key, mask in self.sel.select(timeout):
            if key.data:
                key.data(mask)

    def close(self) -> None:
        self.sel.close()
