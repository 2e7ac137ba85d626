"""The shim (the container's pid on the host) makes a mount namespace only when
the config asks for a new one: without one it stays in the host's, and so do
the hooks it runs, whose mounts reach the host (a GPU hook's, say) and are
exported to the guest. The exports' own mounts live in QEMU's jail alone."""
from __future__ import annotations

import json
import os
import subprocess
import time

HOOK = """#!/bin/sh
/usr/bin/mount -t tmpfs runv-hook-test {point} && echo "from the hook" > {point}/f
"""


def mount_namespace(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/mnt")


# The host's: this process's, where runv runs (pid 1's ns link may be unreadable here).
HOST = "self"


def host_mounts_at(point: str) -> list[str]:
    with open(f"/proc/{HOST}/mountinfo") as f:
        return [ln for ln in f if ln.split()[4] == point]


def recorded(runv, cid: str) -> dict:
    with open(os.path.join(runv.root, cid, "state.json")) as f:
        return json.load(f)


def wait_stopped(runv, cid: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while runv.state(cid)["status"] != "stopped":
        assert time.monotonic() < deadline, f"{cid} still running after {timeout} s"
        time.sleep(0.2)


def test_without_a_mount_namespace_the_shim_and_its_hooks_stay_in_the_hosts(runv, make_bundle, tmp_path):
    source = tmp_path / "source"
    point = source / "m"
    point.mkdir(parents=True)
    hook = tmp_path / "prestart"
    hook.write_text(HOOK.format(point=point))
    hook.chmod(0o755)

    def edit(config):
        config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "mount"]
        config["hooks"] = {"prestart": [{"path": str(hook)}]}
        config["mounts"].append({"destination": "/data", "type": "bind", "source": str(source),
                                 "options": ["rbind", "ro"]})
    bundle = make_bundle(["cat", "/data/m/f"], config_edit=edit)
    os.mkdir(os.path.join(bundle, "rootfs", "data"))
    out, err = tmp_path / "out", tmp_path / "err"
    try:
        with open(out, "wb") as o, open(err, "wb") as e:  # the shim keeps them: files, not pipes
            r = runv("create", "--bundle", bundle, "hostns", stdout=o, stderr=e)
        assert r.returncode == 0, err.read_text()
        state = recorded(runv, "hostns")
        assert mount_namespace(state["pid"]) == mount_namespace(HOST)
        assert mount_namespace(state["qemu_pid"]) != mount_namespace(HOST)  # the jail's own
        # The hook's mount reached the host, and the guest sees it through the rbind.
        assert [ln.split()[-2] for ln in host_mounts_at(str(point))] == ["runv-hook-test"]
        assert runv("start", "hostns").returncode == 0
        wait_stopped(runv, "hostns")
        assert runv("delete", "hostns").returncode == 0
        assert out.read_text() == "from the hook\n"
    finally:
        runv("delete", "--force", "hostns")
        while host_mounts_at(str(point)):
            subprocess.run(["umount", str(point)], check=True)


def test_a_new_mount_namespace_is_the_shims_own(runv, make_bundle):
    bundle = make_bundle(["true"])  # the default config asks for one
    try:
        r = runv("create", "--bundle", bundle, "ownns", detached=True)
        assert r.returncode == 0, r.stderr
        state = recorded(runv, "ownns")
        shim, qemu = mount_namespace(state["pid"]), mount_namespace(state["qemu_pid"])
        assert len({shim, qemu, mount_namespace(HOST)}) == 3
    finally:
        runv("delete", "--force", "ownns")
