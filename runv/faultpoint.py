"""Named points where a test can stop runv to kill it (tests/faults/).

`RUNV_TEST_PAUSE_AT=<phase>` in runv's environment makes the process that
reaches `reached("<phase>")` write its pid to `$RUNV_TEST_PAUSE_FILE` (if set)
and stop itself with SIGSTOP; the test then SIGKILLs whichever process it
means to (this one, the shim, QEMU, a hook) and SIGCONTs the rest. Unset, a
phase point costs one lookup in os.environ.

Phases: create.forked (runv create, the shim forked, its report not read),
shim.cgroup (the shim in its cgroup, nothing booted), shim.network (the taps
made, QEMU not started), shim.qemu (QEMU running, the agent not greeted),
shim.created (created recorded, not yet reported), template.saving (a template
being made, its files not complete), start.sent (runv start, before it asks
the shim), exec.sent (runv exec, before it hands over the stdio),
delete.killed (runv delete --force, the shim killed, nothing torn down).
"""
from __future__ import annotations

import os

ENV = "RUNV_TEST_PAUSE_AT"
REPORT_ENV = "RUNV_TEST_PAUSE_FILE"


def reached(phase: str) -> None:
    if os.environ.get(ENV) == phase:
        _pause(phase)


def _pause(phase: str) -> None:
    import signal

    report = os.environ.get(REPORT_ENV)
    if report:
        with open(report, "a") as f:
            f.write(f"{os.getpid()} {phase}\n")
    os.kill(os.getpid(), signal.SIGSTOP)
