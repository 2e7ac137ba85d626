"""The committed cffi module is what runv/host/_syscalls_build.py generates."""
import os

from runv.host import _syscalls_build


def test_generated_module_is_current(tmp_path):
    _syscalls_build.ffibuilder.compile(tmpdir=str(tmp_path))
    here = os.path.join(os.path.dirname(_syscalls_build.__file__), "_syscalls_cffi.py")
    assert (tmp_path / "_syscalls_cffi.py").read_text() == open(here).read()


def test_calls_work():
    from runv.host import syscalls

    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 0)
