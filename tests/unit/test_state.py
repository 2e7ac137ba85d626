"""The state store, ids, statuses and signal names."""
import os

import pytest

from runv.commands.kill import parse_signal
from runv.errors import CorruptState, Exists, InvalidArgument, InvalidState, NotFound
from runv.oci.resources import guest_size
from runv.state import State, StateDir, check_id, check_root, list_ids
from runv.status import Status, require


@pytest.mark.parametrize("bad", ["", "a/b", "..", ".", "x" * 256, "x" * 1025, "a b", "../x", "a\0b"])
def test_invalid_ids(bad):
    with pytest.raises(InvalidArgument):
        check_id(bad)


def test_valid_ids():
    for good in ["a", "abc-123_x.y", "x" * 255]:  # 255: NAME_MAX, the id names directories
        check_id(good)


def test_state_dir_roundtrip(tmp_path):
    sd = StateDir(str(tmp_path), "c1")
    sd.create()
    assert oct(os.stat(sd.path).st_mode & 0o777) == "0o700"
    sd.write(State(id="c1", bundle="/b", status="created", pid=42))
    assert sd.read().pid == 42
    assert list_ids(str(tmp_path)) == ["c1"]
    with pytest.raises(Exists):
        StateDir(str(tmp_path), "c1").create()
    sd.remove()
    assert list_ids(str(tmp_path)) == []
    with pytest.raises(NotFound):
        StateDir(str(tmp_path), "c1").read()


def test_status_transitions():
    assert Status.CREATED.can_start() and not Status.RUNNING.can_start()
    assert Status.STOPPED.can_delete() and not Status.RUNNING.can_delete()
    assert not Status.STOPPED.can_kill()
    with pytest.raises(InvalidState, match="cannot start container c in running state"):
        require(Status.RUNNING.can_start(), "c", "start", Status.RUNNING)


def test_signal_names():
    assert parse_signal("TERM") == 15 == parse_signal("SIGTERM") == parse_signal("15")
    assert parse_signal("kill") == 9
    with pytest.raises(InvalidArgument):
        parse_signal("NOPE")
    assert parse_signal("64") == 64 and parse_signal("RTMAX") == 64 and parse_signal("sigusr1") == 10


@pytest.mark.parametrize("bad", ["0", "65", "4294967296", "4294967305", "99999999999999999999", "SIG_DFL",
                                 "SIG_IGN", "١٥", "", "-9", "9.0"])
def test_signals_are_1_to_64(bad):
    with pytest.raises(InvalidArgument):
        parse_signal(bad)


def test_guest_size():
    assert guest_size({}).memory_mb == 128
    size = guest_size({"linux": {"resources": {"memory": {"limit": 256 * 2**20},
                                               "cpu": {"quota": 150000, "period": 100000}}}})
    assert size.memory_mb == 256 + 32
    assert size.cpus == min(2, os.cpu_count())


def test_root_must_be_absolute():
    check_root("/run/runv")
    for bad in ("rel", "./x", "", "/a\0b"):
        with pytest.raises(InvalidArgument, match="--root must be an absolute path"):
            check_root(bad)


@pytest.mark.parametrize("content", [
    b"{not json", b"\xff\xfe", b"[]", b"null", b'{"id": "other"}', b'{"id": "c1", "pid": "x"}',
    b'{"id": "c1", "pid": true}', b'{"id": "c1", "pid": -5}', b'{"id": "c1", "pid": 99999999999}',
    b'{"id": "c1", "status": "dancing"}', b'{"id": "c1", "annotations": {"a": 1}}',
    b'{"id": "c1", "cgroup_made": ["/x", 3]}', b'{"id": "c1", "hooks": []}',
])
def test_corrupt_state_is_one_error(tmp_path, content):
    sd = StateDir(str(tmp_path), "c1")
    sd.create()
    with open(sd.state_file, "wb") as f:
        f.write(content)
    with pytest.raises(CorruptState, match="container state of c1 is"):
        sd.read()


def test_state_fields_match_the_well_formed_table():
    from runv.ocistate import STATE_FIELDS

    assert set(State.__dataclass_fields__) == set(STATE_FIELDS)


@pytest.mark.parametrize("argv", [["state", "c1"], ["kill", "c1", "9"], ["kill", "c1", "4294967296"],
                                  ["start", "c1"], ["--root", "rel", "state", "c1"]])
def test_light_paths_stay_light(tmp_path, argv):
    """state, kill and start (and their errors) never load jsonschema or pyroute2."""
    import subprocess
    import sys

    code = ("import sys; from runv import cli\n"
            f"try: cli.main(['--root', {str(tmp_path)!r}] + {argv!r})\n"
            "except SystemExit: pass\n"
            "print(sorted(m for m in ('jsonschema', 'pyroute2') if m in sys.modules))")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": repo})
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr


def test_transition_table():
    """Every move the table allows works; every other raises one error naming both states."""
    from runv.errors import InvalidTransition
    from runv.status import TRANSITIONS

    allowed = {(Status.CREATING, Status.CREATED), (Status.CREATING, Status.STOPPED),
               (Status.CREATED, Status.RUNNING), (Status.CREATED, Status.STOPPED),
               (Status.RUNNING, Status.PAUSED), (Status.RUNNING, Status.STOPPED),
               (Status.PAUSED, Status.RUNNING), (Status.PAUSED, Status.STOPPED)}
    assert {(a, b) for a, tos in TRANSITIONS.items() for b in tos} == allowed
    for old in Status:
        for new in Status:
            state = State(id="c", bundle="/b", status=old.value)
            if (old, new) in allowed:
                state.move(new, 3)
                assert state.status == new.value
                assert state.exit_code == (3 if new is Status.STOPPED else None)
            else:
                with pytest.raises(InvalidTransition, match=f"container c cannot go from {old.value} to {new.value}"):
                    state.move(new)
                assert state.status == old.value


def test_oci_statuses_are_the_enum():
    from runv.ocistate import STATUSES

    assert tuple(s.value for s in Status) == STATUSES
