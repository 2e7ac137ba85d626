"""The 9p exports as QEMU's jail builds them (runv.qemu.jail), no VM: each export
holds exactly its source, nothing can be created beside it, and the mounts stay
in the jail's own mount namespace. The jail is built for real in a forked child
(steps 1 to 3 of Jail.enter: its namespace, its tmpfs, pivot_root), which then
looks around from inside; the shares are named as the shim names them
(runv.sandbox.shares)."""
from __future__ import annotations

import errno
import json
import os

import pytest

from runv.errors import RunvError
from runv.oci.mounts import Bind
from runv.qemu import jail
from runv.qemu.cmdline import Share
from runv.sandbox.shares import exports

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")


def in_child(fn) -> dict:
    """Run fn() in a forked child (which may unshare and pivot); its JSON-able result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = {"ok": fn()}
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            out = {"error": f"{type(e).__name__}: {e}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    out = json.loads(data)
    assert "error" not in out, out["error"]
    return out["ok"]


def mounts_under(path: str, pid: str = "1") -> list[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [ln for ln in f if ln.split()[4].startswith(path)]


def attempt(fn) -> int:
    try:
        fn()
        return 0
    except OSError as e:
        return e.errno or -1


@pytest.fixture
def host(tmp_path):
    """A rootfs, a secret dir with the bound file and its sibling, a bound dir, the jail's dir."""
    (tmp_path / "rootfs" / "etc").mkdir(parents=True)
    secret = tmp_path / "secret-dir"
    secret.mkdir()
    (secret / "bound.txt").write_text("bound\n")
    (secret / "sibling-secret.txt").write_text("secret\n")
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "note").write_text("note\n")
    (tmp_path / "jail").mkdir()
    return tmp_path


def jailed(host, binds: list[Bind], look, before=None):
    """Build the jail with these binds' shares, then look(); before() runs first, in a
    namespace of the child's own (the host's mounts at the jail's making)."""
    shares = exports("rootfs", str(host / "rootfs"), False, binds)

    def child():
        if before:
            jail._own_mount_namespace()
            before()
        jail.Jail(str(host / "jail"), [jail.share_bind(s) for s in shares]).build()
        return look()
    return in_child(child)


# --- named, no mounts --------------------------------------------------------------

def test_a_bind_is_its_source_under_its_basename(host):
    binds = [Bind("b0", str(host / "secret-dir" / "bound.txt"), "bound.txt"),
             Bind("b1", str(host / "data"), "data", readonly=True, recursive=True)]
    shares = exports("rootfs", str(host / "rootfs"), True, binds)
    assert shares == [Share("rootfs", str(host / "rootfs"), True),
                      Share("b0", str(host / "secret-dir" / "bound.txt"), False, entry="bound.txt",
                            recursive=False),
                      Share("b1", str(host / "data"), True, entry="data", recursive=True)]
    targets = [(b.source, b.target, b.directory, b.readonly, b.recursive) for b in map(jail.share_bind, shares)]
    assert targets == [(str(host / "rootfs"), "/shares/rootfs", True, True, True),
                       (str(host / "secret-dir" / "bound.txt"), "/shares/b0/bound.txt", None, False, False),
                       (str(host / "data"), "/shares/b1/data", None, True, True)]


def test_qemu_exports_the_directory_around_the_entry(host):
    share = Share("b0", str(host / "secret-dir" / "bound.txt"), entry="bound.txt")
    _, machine = jail.for_machine(jail_machine(host, share), str(host / "jail"))
    assert "path=/shares/b0," in " ".join(machine.argv())
    assert str(host) not in " ".join(machine.argv())


def jail_machine(host, *shares: Share):
    import shutil

    from runv.qemu.cmdline import Machine

    for name in ("vmlinux", "initrd"):
        (host / name).write_bytes(b"x")
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        pytest.skip("no qemu-system-x86_64")
    return Machine(qemu, str(host / "vmlinux"), str(host / "initrd"), devices=list(shares))


@pytest.mark.parametrize("entry", ["..", ".", "a/b", "../etc", "x\0y"])
def test_an_entry_is_one_name(entry):
    with pytest.raises(ValueError):
        Share("b0", "/src", entry=entry)


def test_a_source_gone_after_the_hooks_is_one_error(host):
    with pytest.raises(RunvError, match=f"^mount source {host}/nothing: No such file or directory$"):
        exports("rootfs", str(host / "rootfs"), False, [Bind("b0", str(host / "nothing"), "nothing")])
    (host / "file").write_text("")
    with pytest.raises(RunvError, match=f"^root path {host}/file: not a directory$"):
        exports("rootfs", str(host / "file"), False, [])


# --- built, in a child ------------------------------------------------------------

@root_only
def test_each_export_holds_its_source_alone(host):
    binds = [Bind("b0", str(host / "secret-dir" / "bound.txt"), "bound.txt"),
             Bind("b1", str(host / "data"), "data", readonly=True, recursive=True)]

    def look():
        return {"shares": sorted(os.listdir("/shares")), "b0": os.listdir("/shares/b0"),
                "b1": os.listdir("/shares/b1"), "rootfs": os.listdir("/shares/rootfs"),
                "file": open("/shares/b0/bound.txt").read(), "note": open("/shares/b1/data/note").read()}
    assert jailed(host, binds, look) == {"shares": ["b0", "b1", "rootfs"], "b0": ["bound.txt"], "b1": ["data"],
                                         "rootfs": ["etc"], "file": "bound\n", "note": "note\n"}
    # The child, its namespace and its mounts are gone; the host never saw one.
    assert mounts_under(str(host)) == [] and mounts_under(str(host), "self") == []
    assert os.listdir(host / "jail") == []
    assert sorted(os.listdir(host / "secret-dir")) == ["bound.txt", "sibling-secret.txt"]


@root_only
def test_read_only_binds_and_the_export_roots_refuse_writes(host):
    binds = [Bind("b0", str(host / "secret-dir" / "bound.txt"), "bound.txt", readonly=True),
             Bind("b1", str(host / "data"), "data")]

    def look():
        return {
            "ro file": attempt(lambda: open("/shares/b0/bound.txt", "w")),
            "rw dir": attempt(lambda: open("/shares/b1/data/new", "w").close()),
            "beside the file": attempt(lambda: open("/shares/b0/sibling", "w")),
            "beside the dir": attempt(lambda: os.mkdir("/shares/b1/other")),
            "a new export": attempt(lambda: os.mkdir("/shares/b2")),
            "the entry's name": attempt(lambda: os.rename("/shares/b1/data", "/shares/b1/moved")),
            "the export's mode": attempt(lambda: os.chmod("/shares/b0", 0o777)),
        }
    assert jailed(host, binds, look) == {"ro file": errno.EROFS, "rw dir": 0, "beside the file": errno.EROFS,
                                         "beside the dir": errno.EROFS, "a new export": errno.EROFS,
                                         "the entry's name": errno.EROFS, "the export's mode": errno.EROFS}
    assert (host / "data" / "new").exists() and (host / "secret-dir" / "bound.txt").read_text() == "bound\n"


@root_only
def test_rbind_carries_the_mounts_below_and_bind_does_not(host):
    """A tmpfs on data/sub (in the child's namespace, as a prestart hook's on the host):
    an rbind exports it, nodev, nosuid and noexec too; a bind shows the empty directory."""
    from runv.host import syscalls as sc

    def before():
        sc.mount("hook", str(host / "data" / "sub"), "tmpfs", 0, "size=64k")
        with open(host / "data" / "sub" / "mounted", "w") as f:
            f.write("by the hook\n")

    def look():
        flags = os.statvfs("/shares/b0/data/sub").f_flag
        return {"rbind": os.listdir("/shares/b0/data/sub"), "bind": os.listdir("/shares/b1/data/sub"),
                "flags": [bool(flags & f) for f in (os.ST_NODEV, os.ST_NOSUID, os.ST_NOEXEC)]}
    binds = [Bind("b0", str(host / "data"), "data", recursive=True), Bind("b1", str(host / "data"), "data")]
    assert jailed(host, binds, look, before) == {"rbind": ["mounted"], "bind": [], "flags": [True, True, True]}
    assert mounts_under(str(host)) == [] and os.listdir(host / "data" / "sub") == []


@root_only
def test_a_file_swapped_for_a_directory_is_bound_as_found(host):
    """The mount point is made of the type the opened source has, not the type planned."""
    binds = [Bind("b0", str(host / "secret-dir" / "bound.txt"), "bound.txt")]
    shares = exports("rootfs", str(host / "rootfs"), False, binds)
    os.unlink(host / "secret-dir" / "bound.txt")
    os.mkdir(host / "secret-dir" / "bound.txt")
    (host / "secret-dir" / "bound.txt" / "inside").write_text("")

    def child():
        jail.Jail(str(host / "jail"), [jail.share_bind(s) for s in shares]).build()
        return os.listdir("/shares/b0/bound.txt")
    assert in_child(child) == ["inside"]


@root_only
def test_a_rootfs_that_is_not_a_directory_is_refused(host):
    (host / "file").write_text("")
    share = jail.share_bind(Share("rootfs", str(host / "file")))

    def child():
        try:
            jail.Jail(str(host / "jail"), [share]).build()
        except OSError as e:
            return e.errno
        return 0
    assert in_child(child) == errno.ENOTDIR
    assert mounts_under(str(host)) == []
