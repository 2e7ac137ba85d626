"""The signals `runv kill` takes: numbers 1-64 and names, as runc takes them."""
from __future__ import annotations

MAX_SIGNAL = 64  # SIGRTMAX on Linux


def parse_signal(name: str) -> int:
    """A signal number (1-64) or name (TERM, SIGTERM, sigterm)."""
    import signal

    from runv.errors import InvalidArgument

    if name.isascii() and name.isdigit():
        if not 1 <= int(name) <= MAX_SIGNAL:
            raise InvalidArgument(f"invalid signal {name!r}: signals are 1-{MAX_SIGNAL}")
        return int(name)
    upper = name.upper()
    sig = getattr(signal, upper if upper.startswith("SIG") else "SIG" + upper, None)
    if not isinstance(sig, signal.Signals) or not 1 <= sig <= MAX_SIGNAL:
        raise InvalidArgument(f"unknown signal {name!r}")
    return int(sig)
