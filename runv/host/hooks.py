"""OCI hooks: each runs with the container's state JSON on stdin, in the runtime's
namespaces, with its own timeout.

createContainer and startContainer would run inside the container; in a VM
runtime the container is behind the hypervisor, so runv runs them on the host
at the same moments (see docs/architecture.md).
"""
from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from runv.errors import RunvError

DEFAULT_TIMEOUT = 60.0


class HookError(RunvError):
    pass


def run(hooks: dict[str, Any] | None, kind: str, state: dict[str, Any], cwd: str,
        netns_fd: int | None = None) -> None:
    """Run every hook of `kind`; the first failure raises HookError."""
    for hook in (hooks or {}).get(kind) or []:
        _run_one(hook, kind, state, cwd, netns_fd)


def run_warn(hooks: dict[str, Any] | None, kind: str, state: dict[str, Any], cwd: str) -> None:
    """poststart and poststop: a failing hook is logged, and the others still run."""
    from runv import log

    for hook in (hooks or {}).get(kind) or []:
        try:
            _run_one(hook, kind, state, cwd, None)
        except HookError as e:
            log.write("warning", str(e))


def _run_one(hook: dict[str, Any], kind: str, state: dict[str, Any], cwd: str,
             netns_fd: int | None) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = dict(e.split("=", 1) for e in hook.get("env") or [] if "=" in e)
    timeout = hook.get("timeout") or DEFAULT_TIMEOUT

    def in_child() -> None:
        import signal

        from runv.host import syscalls

        # A hook does not outlive the runv process that runs it (a killed shim or delete).
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        if netns_fd is not None:
            syscalls.setns(f"/proc/self/fd/{netns_fd}", syscalls.CLONE_NEWNET)

    try:
        r = subprocess.run(args, executable=path, input=json.dumps(state).encode(), env=env,
                           cwd=cwd, capture_output=True, timeout=timeout, close_fds=True,
                           pass_fds=(netns_fd,) if netns_fd is not None else (),
                           preexec_fn=in_child)
    except subprocess.TimeoutExpired:
        raise HookError(f"{kind} hook {path} did not finish within {timeout} s") from None
    except OSError as e:
        raise HookError(f"{kind} hook {path}: {e.strerror}") from None
    if r.returncode != 0:
        detail = (r.stderr or r.stdout).decode(errors="replace").strip().splitlines()
        why = f": {detail[-1]}" if detail else ""
        raise HookError(f"{kind} hook {path} failed with status {r.returncode}{why}")


def validate(hooks: dict[str, Any] | None) -> None:
    """A hook whose failure would fail `create` and that cannot run is a config
    error, found before anything starts."""
    from runv.errors import SpecError

    for kind in ("prestart", "createRuntime", "createContainer"):
        for hook in (hooks or {}).get(kind) or []:
            path = hook.get("path", "")
            if not os.path.isabs(path):
                raise SpecError(f"{kind} hook path {path!r} must be absolute")
            if not os.access(path, os.X_OK):
                raise SpecError(f"{kind} hook {path} is not an executable file")
