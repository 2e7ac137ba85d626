"""Logging in runc's format: text lines, or JSON lines (level, msg, time) for containerd."""
from __future__ import annotations

import json
import sys
import time

_log_file: str | None = None
_json = False
_debug = False


def setup(path: str | None, fmt: str, debug: bool) -> None:
    global _log_file, _json, _debug
    _log_file, _json, _debug = path, fmt == "json", debug


def now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def write(level: str, msg: str) -> None:
    if level == "debug" and not _debug:
        return
    if _json:
        line = json.dumps({"level": level, "msg": msg, "time": now()})
    else:
        line = f'time="{now()}" level={level} msg="{msg}"'
    if _log_file:
        try:
            with open(_log_file, "a") as f:
                f.write(line + "\n")
            return
        except OSError:
            pass
    if level in ("debug", "info") and not _log_file:
        print(line, file=sys.stderr)


def debug(msg: str) -> None:
    write("debug", msg)


def error(msg: str) -> None:
    write("error", msg)
