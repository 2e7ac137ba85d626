"""Pids are checked with their start time before they are signalled."""
import signal
import subprocess

from runv.host import proc


def test_kill_only_the_process_that_started_then():
    p = subprocess.Popen(["sleep", "30"])
    try:
        started = proc.start_time(p.pid)
        assert started is not None
        assert not proc.kill(p.pid, signal.SIGKILL, started + 1)  # a reused pid: spared
        assert not proc.kill(p.pid, signal.SIGKILL, None)         # unknown start: spared
        assert p.poll() is None
        assert proc.kill(p.pid, signal.SIGKILL, started)
        assert p.wait(5) == -signal.SIGKILL
        assert not proc.kill(p.pid, signal.SIGKILL, started)      # gone
    finally:
        p.kill()
        p.wait()


def test_a_zombie_is_not_signalled():
    p = subprocess.Popen(["true"])
    started = proc.start_time(p.pid)
    proc.wait_gone(p.pid, None, 5.0)  # a zombie reads as gone
    assert not proc.kill(p.pid, signal.SIGTERM, started)
    p.wait()
