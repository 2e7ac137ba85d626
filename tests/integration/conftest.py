"""Fixtures that drive the real `runv` binary, booting real VMs.

Every test gets its own --root; at the end of the session a check finds no
QEMU, no shim and no state left behind by any of them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest
from mkbundle import make_rootfs
from runv_testlib import ROOTS, host_changes, host_snapshot, leftovers

# The installed launcher (what engines call), else the venv's console script.
RUNV = os.environ.get("RUNV_BIN") or shutil.which("runv") or os.path.join(os.path.dirname(sys.executable), "runv")


@dataclass
class Runv:
    root: str
    env: dict[str, str]

    def __call__(self, *args: str, input: bytes | None = None, timeout: float = 180,
                 check: bool = False, detached: bool = False, **kw) -> subprocess.CompletedProcess:
        """Run runv. `detached`: for create and run -d, whose shim keeps the
        container's stdio open, so output goes through files instead of pipes."""
        if detached:
            import tempfile

            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                r = subprocess.run([RUNV, "--root", self.root, *args], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=err, timeout=timeout, env=self.env, **kw)
                out.seek(0)
                err.seek(0)
                r.stdout, r.stderr = out.read(), err.read()
            return r
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        r = subprocess.run([RUNV, "--root", self.root, *args], input=input, timeout=timeout,
                           env=self.env, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"runv {' '.join(args)} failed ({r.returncode}): {r.stderr.decode()}")
        return r

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen([RUNV, "--root", self.root, *args], env=self.env, **kw)

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid, check=True).stdout)


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("rootfs") / "rootfs")
    make_rootfs(path)
    return path


@pytest.fixture
def runv(tmp_path) -> Runv:
    root = str(tmp_path / "state")
    ROOTS.append(root)
    env = dict(os.environ)
    return Runv(root, env)


@pytest.fixture
def make_bundle(tmp_path, rootfs_template):
    """make_bundle(args, **process) -> bundle dir, with a copy of the busybox rootfs."""
    from runv.oci.default_spec import default_config

    counter = iter(range(1000))

    def make(args: list[str], config_edit=None, **process) -> str:
        bundle = str(tmp_path / f"bundle{next(counter)}")
        os.makedirs(bundle)
        shutil.copytree(rootfs_template, os.path.join(bundle, "rootfs"), symlinks=True)
        config = default_config()
        config["process"].update({"terminal": False, "args": args, **process})
        if config_edit:
            config_edit(config)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        return bundle

    return make


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """After the suite: no runv process or state of any test's root, and nothing
    new on the host: QEMUs, cgroups under /runv, mounts, netns, links."""
    before = host_snapshot()
    yield
    assert leftovers() == []
    assert host_changes(before) == []
