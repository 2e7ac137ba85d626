"""Text that comes from the guest (agent ERROR messages, console and QEMU log
lines), made safe to show on a terminal or write to a log: one line, no control
characters (so no ANSI escape sequences, no carriage returns or bidi overrides),
and not longer than a screen line or two."""
from __future__ import annotations

LIMIT = 300


def printable(text: str | bytes, limit: int = LIMIT) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    out = []
    size = 0
    for ch in text:
        piece = ch if ch.isprintable() else _escape(ch)
        size += len(piece)
        if size > limit:
            out.append("...")
            break
        out.append(piece)
    return "".join(out)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
