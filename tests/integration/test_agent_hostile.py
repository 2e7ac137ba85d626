"""A container that attacks the guest agent (PID 1 of its VM): FIFOs where the
agent's children open files, a stopper that freezes processes before they run,
stream ids that would alias the agent's own event keys, and many execs. The
agent must answer throughout: a hung agent fails these through the subprocess
or request timeouts. Through the real binary, or the agent driver where the CLI
cannot say it (stream ids)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from runv_testlib import one_line_error

# Long enough for a busy TCG machine, far shorter than "never".
TIMEOUT = 120


@pytest.fixture
def running(runv, make_bundle):
    """running(args, **kw): a detached container 'box' running args."""
    def start(args: list[str], config_edit=None, **process) -> str:
        bundle = make_bundle(args, config_edit=config_edit, **process)
        r = runv("run", "-d", "--bundle", bundle, "box", detached=True, timeout=TIMEOUT)
        assert r.returncode == 0, r.stderr.decode()
        return bundle
    yield start
    for cid in os.listdir(runv.root) if os.path.isdir(runv.root) else []:
        runv("delete", "--force", cid)


def wait_for(cond, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_fifo_for_passwd_at_exec(runv, running):
    # HOME comes from the container's /etc/passwd at every exec: the container
    # makes it a FIFO nobody writes (on its tmpfs: 9p makes no FIFOs from the
    # guest). Before, the exec's child blocked in open() and the agent with it:
    # this exec and everything after it hung.
    def writable(config):
        config["root"]["readonly"] = False

    script = "rm /etc/passwd; mkfifo /dev/shm/passwd; ln -s /dev/shm/passwd /etc/passwd; sleep 300"
    bundle = running(["sh", "-c", script], config_edit=writable)
    wait_for(lambda: os.path.islink(os.path.join(bundle, "rootfs", "etc", "passwd")), "the FIFO")
    r = runv("exec", "box", "sh", "-c", "test -p /etc/passwd && echo p; echo home=$HOME", timeout=TIMEOUT)
    assert r.returncode == 0 and r.stdout == b"p\nhome=/\n", (r.stdout, r.stderr.decode())
    r = runv("exec", "box", "echo", "still", "here", timeout=TIMEOUT)
    assert r.stdout == b"still here\n", r.stderr.decode()


def test_fifos_in_the_image_at_create(runv, make_bundle, tmp_path):
    # The image has FIFOs where the agent's children create or read files while
    # setting the container up: a file bind mount's destination, /etc/passwd
    # (HOME of the init), /dev/console (a terminal's), a device node.
    src = tmp_path / "motd"
    src.write_text("from the host\n")

    def edit(config):
        config["mounts"].append({"destination": "/etc/motd", "type": "bind", "source": str(src),
                                 "options": ["bind", "ro"]})

    bundle = make_bundle(["sh", "-c", "echo home=$HOME; cat /etc/motd"], config_edit=edit)
    rootfs = os.path.join(bundle, "rootfs")
    os.unlink(os.path.join(rootfs, "etc", "passwd"))
    for path in ("etc/passwd", "etc/motd"):
        os.mkfifo(os.path.join(rootfs, path))
    try:
        r = runv("run", "--bundle", bundle, "fifos", timeout=TIMEOUT)
    finally:
        runv("delete", "--force", "fifos")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"home=/\nfrom the host\n", r.stdout


# Stops the agent's children (forks of /init, so named "init") as soon as they
# appear in the container's pid namespace, before they exec: it learns the next
# pid by forking, then tries to stop that pid until it exists.
STOPPER_C = r"""
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    for (;;) {
        pid_t child = fork();
        if (child == 0)
            _exit(0);
        waitpid(child, NULL, 0);
        pid_t next = child + 1;
        while (kill(next, SIGSTOP) < 0 && errno == ESRCH)
            ;
        char path[64], comm[32] = "";
        snprintf(path, sizeof path, "/proc/%d/comm", next);
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            (void)!read(fd, comm, sizeof comm - 1);
            close(fd);
        }
        if (strcmp(comm, "init\n"))
            kill(next, SIGCONT); /* not the agent's */
    }
}
"""


def test_a_stopped_exec_does_not_hang_the_agent(runv, running, make_bundle, tmp_path):
    # Before, the agent waited on the stopped child for ever: this exec hung, and
    # every request after it. Now the agent kills the child and the exec fails
    # cleanly.
    cc = shutil.which("musl-gcc")
    assert cc, "musl-gcc is missing: `make deps` installs it (the agent needs it too)"
    src = tmp_path / "stopper.c"
    src.write_text(STOPPER_C)
    bundle = make_bundle(["/stopper"])
    subprocess.run([cc, "-static", "-O2", "-o", os.path.join(bundle, "rootfs", "stopper"), str(src)], check=True)
    r = runv("run", "-d", "--bundle", bundle, "box", detached=True, timeout=TIMEOUT)  # `running` deletes it
    assert r.returncode == 0, r.stderr.decode()
    r = runv("exec", "box", "true", timeout=TIMEOUT)
    assert "stopped or traced" in one_line_error(r)
    # the agent still answers, and the container can still be killed
    assert runv("ps", "box", timeout=TIMEOUT).returncode == 0
    assert runv("kill", "box", "KILL", timeout=TIMEOUT).returncode == 0
    wait_for(lambda: runv.state("box")["status"] == "stopped", "the container to stop")


def test_many_execs(runv, running):
    # No pid namespace and CAP_SYS_PTRACE: the container sees the agent as its
    # /proc/1, so the test can count the agent's fds and watch its memory.
    def no_pid_ns(config):
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "pid"]
        for kind in ("bounding", "effective", "permitted"):
            config["process"]["capabilities"][kind].append("CAP_SYS_PTRACE")

    running(["sleep", "600"], config_edit=no_pid_ns)

    def agent() -> tuple[int, int]:
        r = runv("exec", "box", "sh", "-c", "ls /proc/1/fd | wc -l; grep VmRSS /proc/1/status",
                 timeout=TIMEOUT)
        assert r.returncode == 0, r.stderr.decode()
        fds, rss = r.stdout.decode().split("\n")[:2]
        return int(fds), int(rss.split()[1])

    def execs(n: int) -> None:
        for i in range(n):
            r = runv("exec", "box", "sh", "-c", f"echo {i}", timeout=TIMEOUT)
            assert r.returncode == 0 and r.stdout == f"{i}\n".encode(), (i, r.stderr.decode())

    fds0, rss0 = agent()
    execs(100)  # the agent's buffers are all in use by now
    fds1, rss1 = agent()
    execs(100)
    fds2, rss2 = agent()
    print(f"agent: {fds0} -> {fds1} -> {fds2} fds, VmRSS {rss0} -> {rss1} -> {rss2} kB, 100 execs apart")
    assert fds0 == fds1 == fds2, "the agent holds more fds after the execs"
    # Before, each exec kept its process slot: about 18 kB more every 100 execs.
    assert rss2 - rss1 <= 4, f"the agent grew by {rss2 - rss1} kB over 100 more execs"
    r = runv("exec", "box", "echo", "alive", timeout=TIMEOUT)
    assert r.stdout == b"alive\n"


# --- straight to the agent ----------------------------------------------------------

def test_stream_ids(tmp_path):
    """Stream 0 and the init's stream 1 are not EXEC's; a live stream is not
    taken twice; before, EXEC on stream 0 keyed its pipes as the agent's port
    and signalfd and the output never came."""
    from agent_driver import VM, create_payload, exec_payload, make_config, make_rootfs

    from runv.agent import protocol as P
    from runv.agent.protocol import Msg

    (tmp_path / "rootfs").mkdir()
    vm = VM(make_rootfs(str(tmp_path / "rootfs")))
    c = vm.agent
    try:
        f = c.request(Msg.CREATE, 0, create_payload(make_config(["sleep", "600"])))
        assert f.type == Msg.ERROR and P.parse_error(f.payload)[0] == 22, f
        f = c.request(Msg.CREATE, 1, create_payload(make_config(["sleep", "600"])))
        assert f.type == Msg.OK, P.parse_error(f.payload)
        assert c.request(Msg.START, 1).type == Msg.OK
        for stream in (0, 1):
            f = c.request(Msg.EXEC, stream, exec_payload(["echo", "hi"]))
            assert f.type == Msg.ERROR and P.parse_error(f.payload)[0] == 22, (stream, f)
        assert c.request(Msg.EXEC, 7, exec_payload(["sleep", "600"])).type == Msg.OK
        f = c.request(Msg.EXEC, 7, exec_payload(["echo", "hi"]))
        assert f.type == Msg.ERROR and P.parse_error(f.payload)[0] == 17, f
        f = c.request(Msg.START, 7)
        assert f.type == Msg.ERROR, f
        # the agent is well: a new stream works, and one whose process is over may be reused
        for stream in (8, 8):
            f = c.request(Msg.EXEC, stream, exec_payload(["echo", "hi"]))
            assert f.type == Msg.OK, P.parse_error(f.payload)
            assert c.wait_exit(stream, 60) == 0 and bytes(c.out[stream][1]) == b"hi\n"
            del c.exits[stream], c.out[stream]
            c.eos.pop(stream, None)
        c.send(Msg.SHUTDOWN)
        c.pump(0.1)
        assert vm.wait_exit(30) is not None
    finally:
        vm.close()
