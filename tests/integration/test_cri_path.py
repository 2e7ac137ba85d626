"""What containerd's CRI plugin asks of runv for a pod, checked on runv alone."""
from __future__ import annotations

import os


def test_read_only_root_gets_its_missing_mount_points(runv, make_bundle, tmp_path):
    """A pod's pause container: a read-only root without /etc/resolv.conf (or /dev/shm's
    parent), a file bound there read-only, a tmpfs on /dev/shm (failed before: the guest
    cannot create a mount point in a root exported read-only)."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.0.0.53\n")
    shm = tmp_path / "shm"
    shm.mkdir()

    def edit(config):
        config["root"]["readonly"] = True
        config["mounts"] += [
            {"destination": "/dev/shm", "type": "bind", "source": str(shm), "options": ["rbind", "ro"]},
            {"destination": "/etc/resolv.conf", "type": "bind", "source": str(resolv), "options": ["rbind", "ro"]},
            {"destination": "/new/dir", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
        ]
    bundle = make_bundle(["sh", "-c", "cat /etc/resolv.conf; test -d /new/dir && echo dir"], config_edit=edit)
    assert not os.path.exists(os.path.join(bundle, "rootfs", "etc", "resolv.conf"))
    r = runv("run", "--bundle", bundle, "pause-like")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split("\n") == ["nameserver 10.0.0.53", "dir", ""]


def test_a_container_joining_a_uts_namespace_takes_its_hostname(runv, make_bundle):
    """A pod's app container joins the pause container's UTS namespace by path and
    names no hostname: its VM gets the pause container's (failed before: "(none)")."""
    import json

    def pause(config):
        config["hostname"] = "pod-a"
    a = make_bundle(["sleep", "600"], config_edit=pause)
    r = runv("create", "--bundle", a, "uts-pause", detached=True)
    assert r.returncode == 0, r.stderr
    try:
        pid = json.loads(runv("state", "uts-pause", check=True).stdout)["pid"]
        uts = f"/proc/{pid}/ns/uts"
        assert os.readlink(uts) != os.readlink("/proc/self/ns/uts")

        def app(config):
            config.pop("hostname", None)
            for ns in config["linux"]["namespaces"]:
                if ns["type"] == "uts":
                    ns["path"] = uts
        b = make_bundle(["hostname"], config_edit=app)
        r = runv("run", "--bundle", b, "uts-app")
        assert (r.returncode, r.stdout.decode()) == (0, "pod-a\n"), r.stderr
    finally:
        runv("delete", "--force", "uts-pause")
