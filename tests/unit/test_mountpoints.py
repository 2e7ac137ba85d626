"""Mount points made in a read-only rootfs (runv.sandbox.mountpoints)."""
import os

from runv.sandbox import mountpoints


def bind(dest, source):
    return {"destination": dest, "type": "bind", "source": source, "options": ["rbind", "ro"]}


def test_missing_dirs_and_files_are_made(tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    src = tmp_path / "resolv.conf"
    src.write_text("x")
    mountpoints.make(str(rootfs), [{"destination": "/proc", "type": "proc", "source": "proc"},
                                   bind("/etc/resolv.conf", str(src)), bind("/data/dir", str(tmp_path))])
    assert (rootfs / "proc").is_dir()
    assert (rootfs / "etc/resolv.conf").is_file() and (rootfs / "etc/resolv.conf").read_text() == ""
    assert (rootfs / "data/dir").is_dir()


def test_what_is_there_is_left_as_it_is(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/resolv.conf").write_text("keep")
    mountpoints.make(str(rootfs), [bind("/etc/resolv.conf", str(rootfs / "etc/resolv.conf"))])
    assert (rootfs / "etc/resolv.conf").read_text() == "keep"


def test_a_symlink_is_never_followed_out_of_the_root(tmp_path):
    rootfs, outside = tmp_path / "rootfs", tmp_path / "outside"
    rootfs.mkdir()
    outside.mkdir()
    os.symlink(str(outside), rootfs / "etc")                 # absolute, to the host
    os.symlink("../../outside", rootfs / "up")               # relative, up and out
    os.symlink(str(outside / "new-file"), rootfs / "leaf")   # the last component itself
    src = tmp_path / "f"
    src.write_text("x")
    mountpoints.make(str(rootfs), [bind("/etc/resolv.conf", str(src)), bind("/up/x/y", str(tmp_path)),
                                   bind("/leaf", str(src))])
    assert os.listdir(outside) == []


def test_a_destination_inside_an_earlier_mount_is_not_made_in_the_rootfs(tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    mountpoints.make(str(rootfs), [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                                   {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"}])
    assert os.listdir(rootfs / "dev") == []


def test_a_file_in_the_way_stops_the_walk(tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "etc").write_text("a file")
    mountpoints.make(str(rootfs), [bind("/etc/resolv.conf", str(tmp_path))])
    assert (rootfs / "etc").read_text() == "a file"
