"""The guest agent's self-test (`tests/agent_driver.py selftest`) under pytest:
each group boots its own VM with the agent built from this tree and speaks
docs/protocol.md to it directly, without the shim."""
from __future__ import annotations

import shutil

import pytest
from agent_driver import Selftest, make_rootfs

GROUPS = sorted(name for name in dir(Selftest) if name.startswith("test_"))


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> str:
    return make_rootfs(str(tmp_path_factory.mktemp("agent-rootfs")))


@pytest.mark.parametrize("group", GROUPS)
def test_selftest(rootfs, group):
    t = Selftest(rootfs, debug=False)
    failures: list[str] = []
    check = t.check

    def record(name: str, ok: bool, detail: str = "") -> None:
        check(name, ok, detail)
        if not ok:
            failures.append(f"{name}: {detail}")

    t.check = record
    try:
        getattr(t, group)()
    finally:
        shutil.rmtree(t.share, ignore_errors=True)
    assert t.passed and not failures, "\n".join(failures)
