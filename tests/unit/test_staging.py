"""runv.sandbox.staging on the host, no VM: each export holds exactly its source, the
mounts stay in a private mount namespace, and removal never crosses a mount.
Each staging runs in a forked child that makes the namespace, as the shim does."""
from __future__ import annotations

import errno
import json
import os

import pytest

from runv.sandbox import staging
from runv.sandbox.staging import Bind

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")


def in_child(fn) -> dict:
    """Run fn() in a forked child (which may unshare); its JSON-able result."""
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


def host_mounts_under(path: str) -> list[str]:
    with open("/proc/1/mountinfo") as f:
        return [ln for ln in f if ln.split()[4].startswith(path)]


@pytest.fixture
def host(tmp_path):
    """A rootfs, a secret dir with the bound file and its sibling, a bound dir."""
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "etc").mkdir()
    secret = tmp_path / "secret-dir"
    secret.mkdir()
    (secret / "bound.txt").write_text("bound\n")
    (secret / "sibling-secret.txt").write_text("secret\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "note").write_text("note\n")
    (tmp_path / "state").mkdir()
    return tmp_path


def stage_and_look(host, binds, look):
    base = str(host / "state" / staging.DIRNAME)

    def child():
        staging.private_namespace()
        shares = staging.stage(base, "rootfs", str(host / "rootfs"), False, binds)
        return {"shares": [[s.tag, s.path, s.readonly] for s in shares], "look": look(base)}
    return base, in_child(child)


def test_each_export_holds_its_source_alone(host):
    binds = [Bind("b0", str(host / "secret-dir" / "bound.txt"), "bound.txt"),
             Bind("b1", str(host / "data"), "data", readonly=True, recursive=True)]

    def look(base):
        return {"b0": os.listdir(f"{base}/b0"), "b1": os.listdir(f"{base}/b1"),
                "root": sorted(os.listdir(base)), "rootfs": os.listdir(f"{base}/rootfs"),
                "file": open(f"{base}/b0/bound.txt").read(),
                "note": open(f"{base}/b1/data/note").read()}
    base, out = stage_and_look(host, binds, look)
    assert out["shares"] == [["rootfs", f"{base}/rootfs", False], ["b0", f"{base}/b0", False],
                             ["b1", f"{base}/b1", True]]
    assert out["look"] == {"b0": ["bound.txt"], "b1": ["data"], "root": ["b0", "b1", "rootfs"],
                           "rootfs": ["etc"], "file": "bound\n", "note": "note\n"}
    # The child (and its namespace) is gone: the host never saw a mount, and
    # sees only the skeleton, which remove deletes.
    assert host_mounts_under(str(host)) == []
    assert os.path.getsize(f"{base}/b0/bound.txt") == 0 and os.listdir(f"{base}/b1/data") == []
    assert staging.remove(base) and not os.path.exists(base)
    assert sorted(os.listdir(host / "secret-dir")) == ["bound.txt", "sibling-secret.txt"]
    assert (host / "data" / "note").read_text() == "note\n"


def test_read_only_binds_and_the_export_roots_refuse_writes(host):
    binds = [Bind("b0", str(host / "secret-dir" / "bound.txt"), "bound.txt", readonly=True),
             Bind("b1", str(host / "data"), "data")]

    def attempt(fn) -> int:
        try:
            fn()
            return 0
        except OSError as e:
            return e.errno

    def look(base):
        return {
            "ro file": attempt(lambda: open(f"{base}/b0/bound.txt", "w")),
            "rw dir": attempt(lambda: open(f"{base}/b1/data/new", "w").close()),
            "beside the file": attempt(lambda: open(f"{base}/b0/sibling", "w")),
            "beside the dir": attempt(lambda: os.mkdir(f"{base}/b1/other")),
        }
    _, out = stage_and_look(host, binds, look)
    assert out["look"] == {"ro file": errno.EROFS, "rw dir": 0,
                           "beside the file": errno.EROFS, "beside the dir": errno.EROFS}
    assert (host / "data" / "new").exists() and (host / "secret-dir" / "bound.txt").read_text() == "bound\n"


def test_remove_never_deletes_through_a_live_mount(host):
    """Seen from inside the namespace, where the mounts are, remove fails safe."""
    binds = [Bind("b0", str(host / "secret-dir" / "bound.txt"), "bound.txt"),
             Bind("b1", str(host / "data"), "data")]

    def look(base):
        return staging.remove(base)
    base, out = stage_and_look(host, binds, look)
    assert out["look"] is False
    assert (host / "secret-dir" / "bound.txt").read_text() == "bound\n"
    assert (host / "data" / "note").read_text() == "note\n"
    assert staging.remove(base)


def test_a_source_gone_is_one_error(host):
    binds = [Bind("b0", str(host / "nothing"), "nothing")]
    base = str(host / "state" / staging.DIRNAME)

    def child():
        staging.private_namespace()
        try:
            staging.stage(base, "rootfs", str(host / "rootfs"), False, binds)
        except Exception as e:  # noqa: BLE001
            return str(e)
    assert in_child(child) == f"mount source {host}/nothing: No such file or directory"
    assert staging.remove(base)


def test_refuses_to_stage_in_the_host_namespace(host):
    """Without private_namespace first, the mounts would land in the host's table."""
    base = str(host / "state" / staging.DIRNAME)

    def child():
        try:
            staging.stage(base, "rootfs", str(host / "rootfs"), False, [])
        except Exception as e:  # noqa: BLE001
            return str(e)
    assert "outside the shim's own mount namespace" in in_child(child)
    assert not os.path.exists(base)
