"""Checks shared by the integration tests (a module name of its own, so that
no other conftest.py shadows it)."""
from __future__ import annotations

import os
import subprocess

# Every --root a test used; the leak check looks for processes naming one.
ROOTS: list[str] = []


def leftovers() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(root in cmdline for root in ROOTS):
            found.append(f"process {pid}: {cmdline[:200]}")
    for root in ROOTS:
        if os.path.isdir(root) and os.listdir(root):
            found.append(f"state left in {root}: {os.listdir(root)}")
    return found


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """Check runc's style of failure: non-zero, one `runv: ...` line, no traceback."""
    err = r.stderr.decode()
    assert r.returncode != 0, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("runv: "), err
    return lines[0]
