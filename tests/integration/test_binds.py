"""Bind mounts export exactly their source: a privileged container that looks
everywhere it can (the guest's shares, every 9p tag it can mount itself) finds
nothing beside the bound file or directory; the exports' mounts exist in QEMU's
jail alone, never in the host's mount table nor the shim's; a bundle path with a
comma cannot change what is exported."""
from __future__ import annotations

import json
import os
import time

from runv.oci.capabilities import CAPS

# Prints what it finds; every line is checked by the test. Without a pid
# namespace, /proc/1/root is the guest agent's root, where the shares are mounted;
# a tag already mounted cannot be mounted again (virtio-9p channels are exclusive),
# but try anyway.
LOOK = r"""
echo "rw-read $(cat /rw.txt)"
echo "ro-read $(cat /ro.txt)"
echo "dir $(ls /dir | tr '\n' ' ')"
echo changed > /rw.txt && echo rw-write ok || echo rw-write refused
echo changed 2>/dev/null > /ro.txt && echo ro-write ok || echo ro-write refused
mount -o remount,rw /ro.txt 2>/dev/null
echo changed 2>/dev/null > /ro.txt && echo ro-remount-write ok || echo ro-remount-write refused
ls /run/shares 2>/dev/null && echo "shares visible"
for d in /proc/1/root/run/shares/*; do
    echo "share ${d##*/}: $(ls -a "$d" | tr '\n' ' ')"
    touch "$d/planted" 2>/dev/null && echo "planted in $d"
done
find / -path /proc -prune -o -path /sys -prune -o -name 'sibling*' -print | sed 's/^/found /'
find /proc/1/root/ -path /proc/1/root/proc -prune -o -path /proc/1/root/sys -prune -o -name 'sibling*' -print \
    | sed 's/^/found /'
for f in /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag; do
    tag=$(tr -d '\n\000' < "$f")
    echo "tag $tag"
    mkdir -p "/mnt/$tag"
    mount -t 9p -o trans=virtio,version=9p2000.L "$tag" "/mnt/$tag" 2>/dev/null || continue
    find "/mnt/$tag" -name 'sibling*' | sed 's/^/found /'
done
echo done
"""


def privileged(config: dict) -> None:
    """All capabilities, no pid namespace, no seccomp: as much as a container gets."""
    caps = {k: list(CAPS) for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    config["process"]["capabilities"] = caps
    config["process"]["noNewPrivileges"] = False
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "pid"]
    config["linux"].pop("seccomp", None)


def host_mounts_mentioning(*paths: str, pid: int = 1) -> list[str]:
    """Lines of a mount table (the host's: pid 1's) whose mount point or root is under a path."""
    with open(f"/proc/{pid}/mountinfo") as f:
        return [ln for ln in f if any(p in ln for p in paths)]


def mount_points(pid: int) -> list[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [ln.split()[4] for ln in f]


def wait_stopped(runv, cid: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while runv.state(cid)["status"] != "stopped":
        assert time.monotonic() < deadline, f"{cid} still running after {timeout} s"
        time.sleep(0.2)


def test_a_bind_shows_its_source_and_nothing_beside_it(runv, make_bundle, tmp_path):
    secret = tmp_path / "secret-dir"
    secret.mkdir()
    (secret / "bound.txt").write_text("rw file\n")
    (secret / "sibling-secret.txt").write_text("do not show\n")
    other = tmp_path / "other-dir"
    other.mkdir()
    (other / "ro.txt").write_text("ro file\n")
    (other / "sibling-of-ro.txt").write_text("do not show\n")
    dirs = tmp_path / "dirs"
    (dirs / "inner").mkdir(parents=True)
    (dirs / "inner" / "a.txt").write_text("a\n")
    (dirs / "sibling-dir-secret.txt").write_text("do not show\n")

    def edit(config):
        privileged(config)
        config["mounts"] += [
            {"destination": "/rw.txt", "type": "bind", "source": str(secret / "bound.txt"), "options": ["bind"]},
            {"destination": "/ro.txt", "type": "bind", "source": str(other / "ro.txt"), "options": ["bind", "ro"]},
            {"destination": "/dir", "type": "bind", "source": str(dirs / "inner"), "options": ["rbind", "rw"]},
        ]
    bundle = make_bundle(["sh", "-c", LOOK], config_edit=edit)
    for name in ("rw.txt", "ro.txt", "dir/"):  # the rootfs is read-only: the mount points must be there
        path = os.path.join(bundle, "rootfs", name)
        os.mkdir(path) if name.endswith("/") else open(path, "w").close()
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        r = runv("create", "--bundle", bundle, "binds", stdout=out, stderr=err)
    assert r.returncode == 0, err_path.read_text()
    state_dir = os.path.join(runv.root, "binds")
    try:
        # The VM runs with its exports built in QEMU's jail: each source alone on an
        # entry of the jail's tmpfs, never a mount in the host's namespace nor the shim's.
        with open(os.path.join(state_dir, "state.json")) as f:
            state = json.load(f)
        exports = {"/shares/rootfs", "/shares/b7/bound.txt", "/shares/b8/ro.txt", "/shares/b9/inner"}
        assert exports <= set(mount_points(state["qemu_pid"])), mount_points(state["qemu_pid"])
        for pid in (1, state["pid"]):
            assert host_mounts_mentioning(state_dir, str(secret), str(other), str(dirs), pid=pid) == [], pid
            assert not [p for p in mount_points(pid) if p.startswith("/shares")], pid
        assert runv("start", "binds").returncode == 0
        wait_stopped(runv, "binds")
    finally:
        runv("delete", "--force", "binds")
    lines = out_path.read_text().splitlines()
    assert lines[-1] == "done", (lines, err_path.read_text())
    assert not [ln for ln in lines if ln.startswith(("found", "planted", "shares visible"))], lines
    assert lines[:6] == ["rw-read rw file", "ro-read ro file", "dir a.txt ", "rw-write ok",
                         "ro-write refused", "ro-remount-write refused"], lines
    shares = {ln.split(":")[0][6:]: ln.split(": ", 1)[1].split() for ln in lines if ln.startswith("share ")}
    assert shares == {"b7": [".", "..", "bound.txt"], "b8": [".", "..", "ro.txt"], "b9": [".", "..", "inner"]}, lines
    # and the pod share (a VM with a network namespace of its own), empty while no container joins it
    assert sorted(ln[4:] for ln in lines if ln.startswith("tag ")) == ["b7", "b8", "b9", "pod", "rootfs"], lines
    assert (secret / "bound.txt").read_text() == "changed\n"
    assert (other / "ro.txt").read_text() == "ro file\n"
    assert sorted(os.listdir(secret)) == ["bound.txt", "sibling-secret.txt"]
    assert sorted(os.listdir(dirs)) == ["inner", "sibling-dir-secret.txt"]
    assert host_mounts_mentioning(state_dir, str(secret), str(other), str(dirs)) == []
    assert not os.path.exists(state_dir)


def test_a_comma_in_the_bundle_path_cannot_change_the_export(runv, make_bundle, tmp_path):
    """A bundle at .../b,path=<decoy> ran with <decoy>/rootfs as its root filesystem."""
    import shutil

    decoy = tmp_path / "decoy"
    original = make_bundle(["cat", "/whoami"])
    with open(os.path.join(original, "rootfs", "whoami"), "w") as f:
        f.write("the bundle's rootfs\n")
    shutil.copytree(os.path.join(original, "rootfs"), decoy / "rootfs", symlinks=True)
    (decoy / "rootfs" / "whoami").write_text("the decoy\n")
    bundle = f"{tmp_path}/b,path={decoy}"  # a directory "b,path=" and below it, the decoy's path
    os.makedirs(os.path.dirname(bundle))
    os.rename(original, bundle)
    r = runv("run", "--bundle", bundle, "comma")
    assert (r.returncode, r.stdout) == (0, b"the bundle's rootfs\n"), r.stderr


def test_a_comma_in_the_state_root_and_a_bind_source(runv, make_bundle, tmp_path):
    """The console log (in the state dir) and the staged shares live under --root."""
    src = tmp_path / "x,readonly=on"
    src.mkdir()
    (src / "f").write_text("")

    def edit(config):
        config["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                                 "options": ["rbind", "rw"]})
    bundle = make_bundle(["sh", "-c", "echo hi > /data/f && ls /data"], config_edit=edit)
    os.mkdir(os.path.join(bundle, "rootfs", "data"))
    runv.root = str(tmp_path / "state,path=etc")
    from runv_testlib import ROOTS

    ROOTS.append(runv.root)
    r = runv("run", "--bundle", bundle, "comma2")
    assert (r.returncode, r.stdout) == (0, b"f\n"), r.stderr
    assert (src / "f").read_text() == "hi\n"
    assert os.listdir(runv.root) == []
