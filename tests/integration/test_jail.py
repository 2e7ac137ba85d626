"""QEMU in its jail (runv/qemu/jail.py), seen from the host while a container
runs: its capabilities, its root, its mounts, its fds; a device node a
privileged container makes on its 9p rootfs; the console log's cap. Through
the real runv binary."""
from __future__ import annotations

import json
import os
import stat
import time

import pytest

from runv.qemu import jail

ALL_CAPS = [f"CAP_{c}" for c in ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP"]]


def privileged(config: dict) -> None:
    config["root"]["readonly"] = False
    config["process"]["capabilities"] = {k: list(ALL_CAPS) for k in
                                         ("bounding", "effective", "permitted", "inheritable", "ambient")}


def start(runv, bundle: str, cid: str) -> dict:
    """`run -d` the bundle; the container's state.json (with qemu_pid)."""
    r = runv("run", "-d", "--bundle", bundle, cid, detached=True)
    assert r.returncode == 0, r.stderr.decode()
    with open(os.path.join(runv.root, cid, "state.json")) as f:
        state = json.load(f)
    assert state["qemu_pid"] > 0
    return state


def wait_for(path: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.lexists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def mountinfo(pid: int) -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of each mount QEMU sees."""
    out = []
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            out.append((fields[4], set(fields[5].split(","))))
    return out


def test_qemu_runs_jailed(runv, make_bundle, tmp_path):
    shared_rw, shared_ro = tmp_path / "rw", tmp_path / "ro"
    shared_rw.mkdir()
    shared_ro.mkdir()

    tags = []

    def edit(config):
        config["root"]["readonly"] = False
        tags.extend([f"b{len(config['mounts'])}", f"b{len(config['mounts']) + 1}"])
        config["mounts"] += [
            {"destination": "/rw", "type": "bind", "source": str(shared_rw), "options": ["rbind", "rw"]},
            {"destination": "/ro", "type": "bind", "source": str(shared_ro), "options": ["rbind", "ro"]}]
    bundle = make_bundle(["sh", "-c", "echo hi > /rw/x; sleep 300"], config_edit=edit)
    rw, ro = tags
    state = start(runv, bundle, "jail1")
    pid = state["qemu_pid"]
    try:
        wait_for(str(shared_rw / "x"))  # the container runs (its VM is up)
        st = status(pid)
        keep = sum(1 << c for c in jail.KEEP_CAPS)
        assert int(st["CapEff"], 16) == keep, st["CapEff"]
        assert int(st["CapPrm"], 16) == keep and int(st["CapBnd"], 16) == keep
        assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0
        assert st["THP_enabled"] == "0"  # guest RAM in 4 KiB pages: untouched pages cost nothing
        assert st["NoNewPrivs"] == "1"
        assert int(st["Seccomp"]) == 2  # QEMU's own -sandbox

        # Its root is the jail: none of the host's files.
        root = f"/proc/{pid}/root"
        assert set(os.listdir(root)) <= {"dev", "proc", "shares", "vm", "usr", "lib", "lib64"}, os.listdir(root)
        assert os.listdir(f"{root}/proc") == ["self"] and os.listdir(f"{root}/proc/self") == ["fd"]
        assert sorted(os.listdir(f"{root}/dev")) == ["null", "urandom", "zero"] + (
            ["kvm"] if state["accel"] == "kvm" else [])
        # and the pod share (its network namespace is its own): read-only, and empty
        assert sorted(os.listdir(f"{root}/shares")) == sorted([rw, ro, "pod", "rootfs"])
        assert os.listdir(f"{root}/shares/pod") == []
        assert sorted(os.listdir(f"{root}/vm")) == ["initrd", "kernel"]
        for secret in ("etc/shadow", "proc/1", "proc/sys", "sys", "root", "run", "var", "tmp"):
            assert not os.path.lexists(f"{root}/{secret}"), secret

        mounts = dict(mountinfo(pid))
        assert "ro" in mounts["/"]
        for point in ("/etc", "/proc", "/sys", "/run", "/tmp", "/var", "/root", "/home"):
            assert point not in mounts, point
        assert {"nosuid", "nodev", "noexec"} <= mounts["/shares/rootfs"], mounts
        assert {"ro", "nosuid", "nodev", "noexec"} <= mounts["/shares/pod"], mounts
        # A bind's share is a directory of the jail's read-only tmpfs holding its source
        # alone, under its basename: the export is no mount, its entry is.
        for share, name in ((rw, "rw"), (ro, "ro")):
            assert f"/shares/{share}" not in mounts and os.listdir(f"{root}/shares/{share}") == [name]
            assert {"nosuid", "nodev", "noexec"} <= mounts[f"/shares/{share}/{name}"], (share, mounts)
        assert "ro" in mounts[f"/shares/{ro}/ro"] and "rw" in mounts[f"/shares/{rw}/rw"]
        assert all("noexec" in opts or point.startswith(("/usr/", "/lib")) for point, opts in mounts.items()
                   if point != "/"), mounts

        # Its fds: what it was given and what it made, none on a host file.
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:
                continue  # closed meanwhile
            assert target.startswith(("socket:", "pipe:", "anon_inode:", "/memfd:", "/dev/null",
                                      "/dev/urandom", "/dev/zero", "/dev/kvm", "/shares/")), (fd, target)

        # On the host, the jail is an empty directory of the state dir.
        assert os.listdir(os.path.join(runv.root, "jail1", "jail")) == []
    finally:
        runv("delete", "--force", "jail1")
    assert not os.path.exists(os.path.join(runv.root, "jail1"))


def host_disk() -> tuple[int, int]:
    """The major:minor of the disk under the host's root (or the first disk)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == "/":
                major, minor = map(int, fields[2].split(":"))
                if major:
                    return major, minor
    for name in sorted(os.listdir("/sys/block")):
        if not name.startswith(("loop", "ram", "zram")):
            with open(f"/sys/block/{name}/dev") as f:
                major, minor = map(int, f.read().split(":"))
                return major, minor
    pytest.skip("no block device on this host")


def test_a_device_node_on_a_share_is_never_opened_by_qemu(runv, make_bundle):
    """The host's root disk as a device node in the rootfs (an image layer may
    hold one): the guest opens its own device of that number, and a guest
    kernel that asked QEMU to open it over 9p would get EACCES, the shares
    being nodev in QEMU's jail. Nor can the guest make a node: QEMU lacks
    CAP_MKNOD."""
    major, minor = host_disk()
    bundle = make_bundle(["sh", "-c", "mknod /made-here c 1 3 2>/mknod-error; touch /ready; sleep 300"],
                         config_edit=privileged)
    rootfs = os.path.join(bundle, "rootfs")
    os.mknod(os.path.join(rootfs, "hostdisk"), stat.S_IFBLK | 0o600, os.makedev(major, minor))
    state = start(runv, bundle, "jail2")
    pid = state["qemu_pid"]
    try:
        wait_for(os.path.join(rootfs, "ready"))
        assert not os.path.lexists(os.path.join(rootfs, "made-here"))
        assert "Operation not permitted" in open(os.path.join(rootfs, "mknod-error")).read()
        # QEMU opens the guest's files by their path in its own view of the host.
        tried = 0
        for path in ("/shares/rootfs/hostdisk", f"{os.path.realpath(rootfs)}/hostdisk"):
            if os.path.lexists(f"/proc/{pid}/root{path}"):
                tried += 1
                with pytest.raises(PermissionError):
                    os.close(os.open(f"/proc/{pid}/root{path}", os.O_RDONLY))
        assert tried == 1
    finally:
        runv("delete", "--force", "jail2")


def test_a_guest_printing_forever_fills_no_disk(runv, make_bundle):
    """The guest's console (here, a privileged container writing to the serial
    port's device) goes to console.log, which keeps only its last MiB."""
    from runv.qemu.logs import LIMIT

    mark = "console-tail-mark"
    script = ("mknod /dev/ttyS0x c 4 64 && "
              "head -c 1500000 /dev/zero | tr '\\0' x | fold -w 100 > /dev/ttyS0x; "
              f"echo {mark} > /dev/ttyS0x; echo done > /done; sleep 300")
    bundle = make_bundle(["sh", "-c", script], config_edit=privileged)
    start(runv, bundle, "jail3")
    console = os.path.join(runv.root, "jail3", "console.log")
    try:
        wait_for(os.path.join(bundle, "rootfs", "done"), timeout=600)
        deadline = time.monotonic() + 30
        while mark not in open(console, errors="replace").read():
            assert time.monotonic() < deadline, "the last line never reached console.log"
            time.sleep(0.2)
        assert os.path.getsize(console) <= LIMIT
        assert open(console, errors="replace").read().startswith("[runv: earlier output dropped]")
    finally:
        runv("delete", "--force", "jail3")


def test_the_kept_capabilities_keep_ownership_and_modes(runv, make_bundle):
    """What each capability QEMU keeps is for, done by the container's root over
    9p and seen on the host: chown (CHOWN), chmod of another uid's directory
    with its setgid bit (FOWNER, FSETID), writing a mode-000 file (DAC_OVERRIDE)."""
    script = ("mkdir /d && chown 1000:1000 /d && chmod 2775 /d && "
              "touch /f && chmod 000 /f && echo written > /f && echo ok > /ok")
    bundle = make_bundle(["sh", "-c", script], config_edit=privileged)
    r = runv("run", "--bundle", bundle, "jail4")
    rootfs = os.path.join(bundle, "rootfs")
    assert r.returncode == 0, r.stderr.decode()
    st = os.stat(os.path.join(rootfs, "d"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o2775)
    with open(os.path.join(rootfs, "f")) as f:
        assert f.read() == "written\n"
    assert os.path.exists(os.path.join(rootfs, "ok"))
