#!/usr/bin/env python3
"""Drive the guest agent directly, without the shim: boot a VM under QEMU and
speak docs/protocol.md over its port.  A debugging tool, and the agent's self-test.

    agent_driver.py run [--rootfs DIR] [-t] [--hostname H] [--user UID:GID] [--cwd D]
                        [--env K=V ...] [--debug] -- CMD [ARG...]
    agent_driver.py selftest [--rootfs DIR] [--debug] [-k NAME]

`run` relays this process's stdin, stdout and stderr and exits with the
container's status.  Without --rootfs a busybox rootfs is made in a temporary
directory.  The kernel and initramfs come from kernel/build-*.sh (cached).
"""
from __future__ import annotations

import argparse
import collections
import http.server
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from runv.agent import protocol as P  # noqa: E402
from runv.agent.link import Handshake  # noqa: E402
from runv.agent.protocol import Msg, Tag  # noqa: E402
from runv.agent.records import create_records, process_records  # noqa: E402
from runv.oci.default_spec import default_config  # noqa: E402
from runv.oci.mounts import GuestMount  # noqa: E402
from runv.qemu.cmdline import KERNEL_ARGS, Console, Machine, SerialPort, Share  # noqa: E402


def build(script: str) -> str:
    return subprocess.run([os.path.join(REPO, "kernel", script)], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()


def make_rootfs(path: str) -> str:
    os.chmod(path, 0o755)  # mkdtemp's 0700 would lock out non-root users in the guest
    for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    shutil.copy2("/bin/busybox", os.path.join(path, "bin", "busybox"))
    applets = subprocess.run(["/bin/busybox", "--list"], check=True, stdout=subprocess.PIPE, text=True).stdout
    for name in applets.split():
        if name != "busybox" and not os.path.lexists(os.path.join(path, "bin", name)):
            os.symlink("busybox", os.path.join(path, "bin", name))
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n")
    return path


class VM:
    """A microvm with the agent as PID 1, the rootfs as 9p tag `rootfs`, and
    extra 9p shares (tag -> host dir). Its argv is runv's (Machine), without
    runv's jail; READY is awaited with runv's own handshake."""

    def __init__(self, rootfs: str, shares: dict[str, str] | None = None, debug: bool = False,
                 qemu_args: list[str] = ()):
        self.dir = tempfile.mkdtemp(prefix="runv-agent-")
        self.console = os.path.join(self.dir, "console.log")
        self.errors = os.path.join(self.dir, "qemu.err")
        kernel_args = KERNEL_ARGS.replace(" quiet", "") + (" runv.debug" if debug else " quiet")
        kernel_args += " " + os.environ.get("AGENT_DRIVER_APPEND", "")
        sock, guest_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        machine = Machine(shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
                          build("build-kernel.sh"), build("build-initramfs.sh"), accel="tcg",
                          kernel_args=kernel_args, sandbox=False, devices=[
                              Console(self.console), SerialPort(P.PORT_NAME, guest_end.fileno()),
                              Share(P.SHARE_ROOT_TAG, rootfs),
                              *(Share(tag, path) for tag, path in (shares or {}).items())])
        cmd = machine.argv() + list(qemu_args) + os.environ.get("AGENT_DRIVER_QEMU_ARGS", "").split()
        with open(self.errors, "w") as err:
            self.qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err, pass_fds=(guest_end.fileno(),))
        guest_end.close()
        self.t0 = time.monotonic()
        self.pidfd = os.pidfd_open(self.qemu.pid)
        try:
            hs = Handshake.start(_Booting(sock, self.pidfd, self), 30)
        except BaseException:
            sock.close()
            self.close(keep=True)
            raise
        self.version, self.name = P.VERSION, hs.name
        self.agent = Client(sock, hs.decoder, hs.pending)
        self.boot_time = time.monotonic() - self.t0

    def failure(self) -> str:
        for path in (self.errors, self.console):
            try:
                lines = [ln for ln in open(path, errors="replace").read().splitlines() if ln.strip()]
            except OSError:
                lines = []
            if lines:
                return lines[-1]
        return f"exit status {self.qemu.returncode}"

    def wait_exit(self, timeout: float = 10) -> int | None:
        try:
            return self.qemu.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self, keep: bool = False) -> None:
        if self.qemu.poll() is None:
            self.qemu.kill()
            self.qemu.wait()
        if hasattr(self, "agent"):
            self.agent.sock.close()
        os.close(self.pidfd)
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class _Booting:
    """What runv's handshake needs of a VM (runv.agent.link.Guest)."""
    agent: socket.socket
    pidfd: int
    vm: VM

    def wait(self, timeout: float) -> bool:
        return self.vm.wait_exit(timeout) is not None

    def failure(self) -> str:
        return self.vm.failure()


class Client:
    """The host side of the port: replies queue up; stdio is ACKed and
    collected per stream; stdin is sent within the window. `decoder` and
    `pending` carry on from a handshake."""

    def __init__(self, sock: socket.socket, decoder: P.Decoder | None = None,
                 pending: list[P.Frame] | None = None):
        self.sock = sock
        sock.setblocking(False)
        self.dec = decoder or P.Decoder()
        self.replies: collections.deque[P.Frame] = collections.deque()
        self.outbuf = bytearray()
        self.out: dict[int, dict[int, bytearray]] = collections.defaultdict(lambda: {1: bytearray(), 2: bytearray()})
        self.eos: dict[int, set[int]] = collections.defaultdict(set)
        self.exits: dict[int, int] = {}
        self.stdin: dict[int, bytearray] = collections.defaultdict(bytearray)
        self.stdin_unacked: dict[int, int] = collections.defaultdict(int)
        self.stdin_close: set[int] = set()
        self.max_unacked_seen = 0
        self.ack = True  # False: stop acknowledging output (to test the window)
        self.unacked_out: dict[tuple[int, int], int] = collections.defaultdict(int)
        self.on_output = None  # callback(stream, which, data)
        for f in pending or []:
            self._handle(f)

    def send(self, type: Msg, stream: int = 0, payload: bytes = b"") -> None:
        self.outbuf += P.encode(type, stream, payload)

    def write_stdin(self, stream: int, data: bytes, close: bool = False) -> None:
        self.stdin[stream] += data
        if close:
            self.stdin_close.add(stream)

    def release_acks(self) -> None:
        self.ack = True
        for (stream, which), n in list(self.unacked_out.items()):
            if n:
                self.send(Msg.ACK, stream, P.ack_payload(which, n))
        self.unacked_out.clear()

    def _queue_stdin(self) -> None:
        for stream, buf in self.stdin.items():
            while buf and self.stdin_unacked[stream] < P.WINDOW:
                n = min(len(buf), P.MAX_PAYLOAD, P.WINDOW - self.stdin_unacked[stream])
                self.send(Msg.STDIN, stream, bytes(buf[:n]))
                self.stdin_unacked[stream] += n
                del buf[:n]
            if not buf and stream in self.stdin_close:
                self.send(Msg.STDIN, stream, b"")
                self.stdin_close.discard(stream)

    def _handle(self, f: P.Frame) -> None:
        if f.type in (Msg.STDOUT, Msg.STDERR):
            which = 1 if f.type == Msg.STDOUT else 2
            if not f.payload:
                self.eos[f.stream].add(which)
                return
            if which in self.eos[f.stream]:
                raise AssertionError(f"output after end of stream on {f.stream}")
            self.out[f.stream][which] += f.payload
            if self.on_output:
                self.on_output(f.stream, which, f.payload)
            if self.ack:
                self.send(Msg.ACK, f.stream, P.ack_payload(which, len(f.payload)))
            else:
                self.unacked_out[(f.stream, which)] += len(f.payload)
                self.max_unacked_seen = max(self.max_unacked_seen, self.unacked_out[(f.stream, which)])
        elif f.type == Msg.ACK:
            which, n = P.parse_ack(f.payload)
            assert which == 0, f"ACK for stream {which} from the guest"
            self.stdin_unacked[f.stream] -= n
            assert self.stdin_unacked[f.stream] >= 0, "guest acknowledged more stdin than sent"
        elif f.type == Msg.EXIT:
            assert self.eos[f.stream] == {1, 2}, f"EXIT before end of streams on {f.stream}"
            self.exits[f.stream] = struct.unpack("<i", f.payload)[0]
        else:
            self.replies.append(f)

    def pump(self, timeout: float) -> bool:
        """One round of I/O; False if the VM hung up."""
        self._queue_stdin()
        w = [self.sock] if self.outbuf else []
        r, w, _ = select.select([self.sock], w, [], timeout)
        if w:
            try:
                n = self.sock.send(self.outbuf)
                del self.outbuf[:n]
            except BlockingIOError:
                pass
        if r:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return True
            except ConnectionResetError:
                return False
            if not data:
                return False
            for f in self.dec.feed(data):
                self._handle(f)
        return True

    def wait(self, cond, timeout: float = 30, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            if not self.pump(min(left, 0.5)) and not cond():
                raise ConnectionError(f"the VM hung up while waiting for {what}")

    def wait_frame(self, timeout: float = 30) -> P.Frame:
        self.wait(lambda: self.replies, timeout, "a reply")
        return self.replies.popleft()

    def request(self, type: Msg, stream: int, payload: bytes = b"", timeout: float = 30) -> P.Frame:
        self.send(type, stream, payload)
        f = self.wait_frame(timeout)
        assert f.stream == stream and f.type in (Msg.OK, Msg.ERROR), f"bad reply {f}"
        return f

    def wait_exit(self, stream: int, timeout: float = 60) -> int:
        self.wait(lambda: stream in self.exits, timeout, f"EXIT of stream {stream}")
        return self.exits[stream]


# --- building requests ---------------------------------------------------------

ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"]


def make_config(args: list[str], **process) -> dict:
    c = default_config()
    c["root"]["readonly"] = False
    c["process"].update(args=args, terminal=False, env=list(ENV))
    c["process"].update(process)
    c["hostname"] = "runv-test"
    return c


def create_payload(config: dict, extra_mounts: list[dict] = (), shares: list[tuple[str, str]] = (),
                   extra: bytes = b"") -> bytes:
    mounts = [GuestMount(m["type"], m["source"], m["destination"], m.get("options", []))
              for m in list(config["mounts"]) + list(extra_mounts)]
    return create_records(config, mounts, list(shares)) + extra


def exec_payload(args: list[str], extra: bytes = b"", **process) -> bytes:
    p = {"args": args, "env": list(ENV), "cwd": "/", "terminal": False}
    p.update(process)
    return process_records(p) + extra


def status_str(st: int) -> str:
    return f"exit {st >> 8 & 0xff}" if st & 0x7f == 0 else f"signal {st & 0x7f}"


# --- run -------------------------------------------------------------------------

def cmd_run(a) -> int:
    rootfs = a.rootfs or make_rootfs(tempfile.mkdtemp(prefix="runv-rootfs-"))
    try:
        vm = VM(rootfs, debug=a.debug)
    except BaseException:
        if not a.rootfs:
            shutil.rmtree(rootfs, ignore_errors=True)
        raise
    try:
        proc = {"terminal": a.t, "cwd": a.cwd, "env": ENV + a.env}
        if a.user:
            uid, _, gid = a.user.partition(":")
            proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        cfg = make_config(a.cmd, **proc)
        cfg["hostname"] = a.hostname
        c = vm.agent
        c.on_output = lambda s, w, d: (sys.stdout if w == 1 else sys.stderr).buffer.write(d) or \
            (sys.stdout if w == 1 else sys.stderr).flush()
        f = c.request(Msg.CREATE, 1, create_payload(cfg))
        if f.type == Msg.ERROR:
            print("runv: " + P.parse_error(f.payload)[1], file=sys.stderr)
            return 125
        if a.t and os.isatty(1):
            cols, rows = os.get_terminal_size()
            c.send(Msg.WINSIZE, 1, P.winsize_payload(rows, cols))
        f = c.request(Msg.START, 1)
        if f.type == Msg.ERROR:
            print("runv: " + P.parse_error(f.payload)[1], file=sys.stderr)
        stdin_open = not os.isatty(0)
        while 1 not in c.exits:
            if stdin_open and not c.stdin[1] and select.select([0], [], [], 0)[0]:
                data = os.read(0, 65536)
                c.write_stdin(1, data, close=not data)
                stdin_open = bool(data)
            if not c.pump(0.05):
                break
        st = c.exits.get(1, 255 << 8)
        c.send(Msg.SHUTDOWN)
        c.pump(0.1)
        vm.wait_exit(5)
        return P.parse_exit(struct.pack("<i", st))
    finally:
        vm.close(keep=a.debug)
        if a.debug:
            print(f"console log: {vm.console}", file=sys.stderr)
        if not a.rootfs:
            shutil.rmtree(rootfs, ignore_errors=True)


# --- selftest ---------------------------------------------------------------------

class Selftest:
    def __init__(self, rootfs: str, debug: bool):
        self.rootfs, self.debug = rootfs, debug
        self.passed = self.failed = 0
        self.share = tempfile.mkdtemp(prefix="runv-share-")
        with open(os.path.join(self.share, "hello.txt"), "w") as f:
            f.write("from the host\n")

    def vm(self, **kw) -> VM:
        return VM(self.rootfs, shares={"s0": self.share}, debug=self.debug, **kw)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        if ok:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name} {detail}")

    def run_exec(self, c: Client, stream: int, args: list[str], stdin: bytes | None = None, **process):
        f = c.request(Msg.EXEC, stream, exec_payload(args, **process))
        if f.type == Msg.ERROR:
            return None, P.parse_error(f.payload), b"", b""
        if stdin is not None:
            c.write_stdin(stream, stdin, close=True)
        st = c.wait_exit(stream, 120)
        return st, None, bytes(c.out[stream][1]), bytes(c.out[stream][2])

    def test_main(self) -> None:
        """One container whose init waits; most checks as EXECs into it."""
        vm = self.vm()
        c = vm.agent
        try:
            self.check("READY version 1, name runv-agent", (vm.version, vm.name) == (1, "runv-agent"),
                       f"{vm.version} {vm.name}")
            print(f"     (boot to READY in {vm.boot_time:.2f} s)")
            share_mount = {"destination": "/mnt/share", "type": "bind", "source": "/run/shares/s0",
                           "options": ["rbind", "ro"]}
            cfg = make_config(["sh", "-c", "trap 'exit 7' TERM; echo init started; while :; do sleep 0.2; done"])
            f = c.request(Msg.CREATE, 1, create_payload(cfg, [share_mount], [("s0", "/run/shares/s0")]))
            self.check("CREATE ok with a pid", f.type == Msg.OK and P.parse_u32(f.payload) > 1,
                       str(f) if f.type != Msg.OK else "")
            if f.type != Msg.OK:
                return
            f = c.request(Msg.START, 1)
            self.check("START ok", f.type == Msg.OK, str(f))
            c.wait(lambda: b"init started" in c.out[1][1], 20, "init output")
            self.check("init output", c.out[1][1] == b"init started\n", repr(c.out[1][1]))

            st, err, out, _ = self.run_exec(c, 2, ["echo", "hello", "world"])
            self.check("exec echo", st == 0 and out == b"hello world\n", f"{st} {err} {out!r}")
            st, err, out, _ = self.run_exec(c, 3, ["sh", "-c", "echo to-stderr >&2; exit 3"])
            self.check("exit code 3 and stderr", st == 3 << 8 and c.out[3][2] == b"to-stderr\n",
                       f"{st} {c.out[3]}")
            st, err, out, _ = self.run_exec(c, 4, ["sh", "-c", "exit 42"])
            self.check("exit code 42", st == 42 << 8, f"{st} {err}")
            data = os.urandom(300_000) + b"end\n"
            st, err, out, _ = self.run_exec(c, 5, ["cat"], stdin=data)
            self.check("cat stdin passthrough (300 kB, window)", st == 0 and out == data,
                       f"{st} {err} {len(out)}")
            st, err, out, _ = self.run_exec(c, 6, ["sh", "-c", "read a; echo got:$a"], stdin=b"line1\n")
            self.check("stdin read", out == b"got:line1\n", repr(out))
            st, err, out, _ = self.run_exec(c, 7, ["sh", "-c", "hostname; id -u; id -g; id -G; pwd; echo $FOO; echo $HOME; umask"],
                                            cwd="/tmp", env=ENV + ["FOO=bar baz"],
                                            user={"uid": 1000, "gid": 1000, "additionalGids": [5, 6]})
            self.check("hostname uid gid groups cwd env HOME umask",
                       out == b"runv-test\n1000\n1000\n1000 5 6\n/tmp\nbar baz\n/home/user\n0022\n", repr(out))
            st, err, out, _ = self.run_exec(c, 21, ["sh", "-c", "echo via-dev-stdout > /dev/stdout; echo e > /dev/stderr"],
                                            user={"uid": 1000, "gid": 1000})
            self.check("a user can reopen /dev/stdout and /dev/stderr", out == b"via-dev-stdout\n" and c.out[21][2] == b"e\n",
                       f"{out!r} {c.out[21][2]!r}")
            st, err, out, _ = self.run_exec(c, 8, ["sh", "-c", "umask"], user={"uid": 0, "gid": 0, "umask": 0o077})
            self.check("umask record", out == b"0077\n", repr(out))
            st, err, out, _ = self.run_exec(c, 9, ["sh", "-c", "mount | awk '{print $3, $5}' | sort; ls /dev; readlink /dev/ptmx"])
            text = out.decode()
            want = ["/ 9p", "/proc proc", "/dev tmpfs", "/dev/pts devpts", "/dev/shm tmpfs", "/dev/mqueue mqueue",
                    "/sys sysfs", "/sys/fs/cgroup cgroup2", "/mnt/share 9p"]
            missing = [w for w in want if w not in text]
            devs = ["null", "zero", "full", "random", "urandom", "tty", "stdin", "stdout", "stderr", "fd", "ptmx"]
            self.check("mounts (proc, tmpfs, devpts, mqueue, sysfs, cgroup, bind share)", not missing,
                       f"missing {missing} in\n{text}")
            self.check("default devices and links", all(f"\n{d}\n" in "\n" + text for d in devs) and "pts/ptmx" in text,
                       text)
            st, err, out, _ = self.run_exec(c, 10, ["sh", "-c", "cat /mnt/share/hello.txt; touch /mnt/share/x 2>&1; echo rw > /tmp/f && cat /tmp/f"])
            self.check("bind share read-only, rootfs writable", out.startswith(b"from the host\n") and
                       b"Read-only file system" in out and out.endswith(b"rw\n"), repr(out))
            st, err, out, _ = self.run_exec(c, 11, ["sh", "-c", "ps -o pid,args | head -3; echo $$"])
            self.check("pid namespace (init is 1)", b"    1 sh -c trap" in out or b"1 sh -c trap" in out, repr(out))
            t0 = time.monotonic()
            st, err, out, _ = self.run_exec(c, 12, ["head", "-c", "20000000", "/dev/zero"])
            dt = time.monotonic() - t0
            self.check(f"20 MB output complete ({dt:.1f} s)", st == 0 and len(out) == 20_000_000 and not out.strip(b"\0"),
                       f"{st} {len(out)}")
            f = c.request(Msg.EXEC, 13, exec_payload(["nosuchcmd", "x"]))
            msg = P.parse_error(f.payload) if f.type == Msg.ERROR else None
            self.check("EXEC of a missing binary -> ERROR ENOENT", msg is not None and msg[0] == 2 and
                       msg[1] == 'exec: "nosuchcmd": executable file not found in $PATH', str(msg))
            f = c.request(Msg.EXEC, 14, exec_payload(["/etc/passwd"]))
            msg = P.parse_error(f.payload) if f.type == Msg.ERROR else None
            self.check("EXEC of a non-executable -> ERROR EACCES", msg is not None and msg[0] == 13, str(msg))
            f = c.request(Msg.EXEC, 15, exec_payload(["pwd"], cwd="/nonexistent"))
            msg = P.parse_error(f.payload) if f.type == Msg.ERROR else None
            self.check("EXEC with a missing cwd -> ERROR", msg is not None and "cwd" in msg[1], str(msg))

            # flow control: stop acking, the guest must stop at one window
            c.ack = False
            f = c.request(Msg.EXEC, 16, exec_payload(["head", "-c", "3000000", "/dev/zero"]))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                c.pump(0.2)
            held = c.max_unacked_seen
            self.check("output stops at the window without ACKs", held == P.WINDOW and 16 not in c.exits, f"{held}")
            c.release_acks()
            st = c.wait_exit(16, 60)
            self.check("output resumes after ACKs", st == 0 and len(c.out[16][1]) == 3_000_000, f"{len(c.out[16][1])}")

            # terminal exec
            f = c.request(Msg.EXEC, 17, exec_payload(["sh", "-c", "sleep 0.5; tty; stty size; read x; echo got:$x"], terminal=True))
            self.check("EXEC with a terminal", f.type == Msg.OK, str(f))
            c.send(Msg.WINSIZE, 17, P.winsize_payload(33, 101))
            time.sleep(0.3)
            c.write_stdin(17, b"typed\n")
            st = c.wait_exit(17, 20)
            out = bytes(c.out[17][1])
            self.check("terminal: tty, winsize, echo, CRLF", st == 0 and b"/dev/pts/0\r\n" in out and b"33 101\r\n" in out
                       and b"typed\r\n" in out and b"got:typed\r\n" in out and not c.out[17][2], repr(out))

            # signals
            f = c.request(Msg.EXEC, 18, exec_payload(["sleep", "100"]))
            time.sleep(0.2)
            f = c.request(Msg.SIGNAL, 18, P.signal_payload(15))
            st = c.wait_exit(18, 10)
            self.check("SIGNAL TERM -> signalled status", f.type == Msg.OK and st == 15, f"{f} {st}")
            f = c.request(Msg.SIGNAL, 18, P.signal_payload(9))
            self.check("SIGNAL to an exited process -> ESRCH",
                       f.type == Msg.ERROR and P.parse_error(f.payload)[0] == 3, str(f))
            f = c.request(Msg.EXEC, 19, exec_payload(["sleep", "100"]))
            pid19 = P.parse_u32(f.payload)
            f = c.request(Msg.PS, 1)
            pids = P.parse_u32_list(f.payload)
            self.check("PS lists the container's processes", f.type == Msg.OK and pid19 in pids and len(pids) >= 3,
                       f"{pids} {pid19}")
            f = c.request(Msg.SIGNAL, 19, P.signal_payload(9))
            self.check("SIGNAL KILL", c.wait_exit(19, 10) == 9, str(c.exits.get(19)))
            f = c.request(Msg.NETIF, 0, P.record(Tag.NET_MAC, bytes.fromhex("020000000009")))
            self.check("NETIF for a missing NIC -> ERROR ENODEV", f.type == Msg.ERROR and P.parse_error(f.payload)[0] == 19,
                       str(f))

            # the init: TERM, its trap exits 7; then SHUTDOWN powers off
            f = c.request(Msg.EXEC, 20, exec_payload(["sleep", "100"]))
            f = c.request(Msg.SIGNAL, 1, P.signal_payload(15))
            st = c.wait_exit(1, 10)
            self.check("init exit status 7 after TERM (trap)", st == 7 << 8, status_str(st))
            st = c.wait_exit(20, 10)
            self.check("init exit kills the rest", st == 9, status_str(st))
            c.send(Msg.SHUTDOWN)
            c.pump(0.1)
            self.check("SHUTDOWN powers off", vm.wait_exit(10) is not None)
        finally:
            vm.close(keep=self.debug)

    def test_create_errors(self) -> None:
        vm = self.vm()
        c = vm.agent
        try:
            f = c.request(Msg.CREATE, 1, create_payload(make_config(["nosuchcmd"])))
            msg = P.parse_error(f.payload) if f.type == Msg.ERROR else None
            self.check("CREATE of a missing binary -> ERROR ENOENT", msg == (2, 'exec: "nosuchcmd": executable file not found in $PATH'),
                       str(msg))
            bad = make_config(["true"])
            bad["mounts"].append({"destination": "/bad", "type": "nosuchfs", "source": "x"})
            f = c.request(Msg.CREATE, 1, create_payload(bad))
            msg = P.parse_error(f.payload) if f.type == Msg.ERROR else None
            self.check("CREATE with a bad mount -> ERROR naming it", msg == (19, 'mount "x" on "/bad": No such device'),
                       str(msg))
            # after failed CREATEs the VM still takes a good one; init exit 42
            f = c.request(Msg.CREATE, 1, create_payload(make_config(["sh", "-c", "echo $0; exit 42"])))
            self.check("CREATE after failures", f.type == Msg.OK, str(f))
            f = c.request(Msg.START, 1)
            st = c.wait_exit(1, 20)
            self.check("init exit code 42", st == 42 << 8 and c.out[1][1] == b"sh\n", f"{st} {c.out[1]}")
            f = c.request(Msg.START, 1)
            self.check("START after exit -> ERROR", f.type == Msg.ERROR, str(f))
            t0 = time.monotonic()
            code = vm.wait_exit(10)
            self.check(f"no SHUTDOWN: VM powers off by itself ({time.monotonic() - t0:.1f} s)", code is not None)
        finally:
            vm.close(keep=self.debug)

    def test_terminal_init(self) -> None:
        vm = self.vm()
        c = vm.agent
        try:
            cfg = make_config(["sh", "-c", "tty; stty size; ls -l /dev/console | cut -c1; cat"], terminal=True)
            cfg["root"]["readonly"] = True
            f = c.request(Msg.CREATE, 1, create_payload(cfg))
            self.check("CREATE terminal init (read-only root)", f.type == Msg.OK, str(f))
            c.send(Msg.WINSIZE, 1, P.winsize_payload(40, 120))
            f = c.request(Msg.START, 1)
            c.wait(lambda: b"\r\nc\r\n" in c.out[1][1], 20, "tty output")
            c.write_stdin(1, b"abc\n", close=True)
            st = c.wait_exit(1, 20)
            out = bytes(c.out[1][1])
            self.check("terminal init: tty, winsize, console, VEOF on close", st == 0 and out.startswith(b"/dev/pts/0\r\n40 120\r\nc\r\n")
                       and out.count(b"abc\r\n") == 2, f"{status_str(st)} {out!r}")
        finally:
            vm.close(keep=self.debug)

    def test_security(self) -> None:
        """rlimits, caps, no_new_privs, oom_score_adj, masked/readonly paths, sysctl,
        devices, read-only root, seccomp."""
        vm = self.vm()
        c = vm.agent
        try:
            cfg = make_config(["sh", "-c", "sleep 100"])
            cfg["root"]["readonly"] = True
            extra = b"".join([
                P.record(Tag.MASKED_PATH, b"/proc/version"), P.record(Tag.MASKED_PATH, b"/sys/kernel"),
                P.record(Tag.MASKED_PATH, b"/proc/nonexistent"),
                P.record(Tag.READONLY_PATH, b"/proc/sys"), P.record(Tag.READONLY_PATH, b"/nonexistent"),
                P.rec_cstrs(Tag.SYSCTL, b"", "kernel.msgmax", "12345"),
                P.record(Tag.DEVICE, struct.pack("<6I", ord("c"), 1, 3, 0o620, 1000, 1000) + b"/dev/mynull"),
                P.rec_str(Tag.DOMAINNAME, "example.org"),
            ])
            f = c.request(Msg.CREATE, 1, create_payload(cfg, extra=extra))
            self.check("CREATE with masked/readonly paths, sysctl, device", f.type == Msg.OK, str(f))
            f = c.request(Msg.START, 1)
            cap = lambda *n: sum(1 << i for i in n)  # noqa: E731
            sec = b"".join([
                P.record(Tag.RLIMIT, struct.pack("<IQQ", 7, 123, 456)),  # RLIMIT_NOFILE
                P.record(Tag.CAPS, struct.pack("<5Q", cap(0, 1, 5, 21), cap(0, 5), 0, cap(0, 5), 0)),
                P.rec_u32(Tag.NO_NEW_PRIVS, 1),
                P.rec_i32(Tag.OOM_SCORE_ADJ, 321),
            ])
            script = ("ulimit -n; ulimit -Hn; grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status;"
                      "cat /proc/self/oom_score_adj; wc -c < /proc/version; ls /sys/kernel | wc -l;"
                      "(echo x > /proc/sys/kernel/msgmax) 2>&1; cat /proc/sys/kernel/msgmax; ls -ln /dev/mynull | cut -c1-10;"
                      "ls -ln /dev/mynull | awk '{print $3, $4}'; cat /proc/sys/kernel/domainname; touch /x 2>&1; echo end")
            st, err, out, _ = self.run_exec(c, 2, ["sh", "-c", script], extra=sec)
            want = (b"123\n456\nCapPrm:\t0000000000000021\nCapEff:\t0000000000000021\nCapBnd:\t0000000000200023\n"
                    b"NoNewPrivs:\t1\n321\n0\n0\n")
            self.check("rlimit caps nnp oom masked", out.startswith(want), repr(out))
            self.check("readonly path, sysctl, device, domainname, read-only root",
                       b"Read-only file system\n12345\ncrw--w----\n1000 1000\nexample.org\n" in out
                       and out.count(b"Read-only file system") == 2 and out.endswith(b"end\n"), repr(out))
            # seccomp: return EPERM (1) for getpid (39), allow everything else
            bpf = b"".join(struct.pack("<HBBI", *i) for i in [
                (0x20, 0, 0, 0),            # ld [nr]
                (0x15, 0, 1, 39),           # jeq #39
                (0x06, 0, 0, 0x00050001),   # ret ERRNO(1)
                (0x06, 0, 0, 0x7fff0000),   # ret ALLOW
            ])
            st, err, out, _ = self.run_exec(c, 3, ["sh", "-c", "echo $$; grep Seccomp: /proc/self/status"],
                                            extra=P.record(Tag.SECCOMP, bpf) + P.rec_u32(Tag.NO_NEW_PRIVS, 1))
            self.check("seccomp filter installed", b"Seccomp:\t2" in out, repr(out))
            # without no_new_privs (installed before the user change), with SECCOMP_FILTER_FLAG_LOG
            st, err, out, _ = self.run_exec(c, 4, ["sh", "-c", "grep -E 'Seccomp:|NoNewPrivs' /proc/self/status"],
                                            user={"uid": 1000, "gid": 1000},
                                            extra=P.record(Tag.SECCOMP, bpf) + P.rec_u32(Tag.SECCOMP_FLAGS, 2))
            self.check("seccomp without no_new_privs, as a user", out == b"NoNewPrivs:\t0\nSeccomp:\t2\n", f"{err} {out!r}")
            c.request(Msg.SIGNAL, 1, P.signal_payload(9, True))
            st = c.wait_exit(1, 10)
            self.check("SIGNAL all KILL", st == 9, status_str(st))
        finally:
            vm.close(keep=self.debug)

    def test_kill_before_start(self) -> None:
        vm = self.vm()
        c = vm.agent
        try:
            cfg = make_config(["sleep", "100"])
            cfg["linux"]["namespaces"] = [{"type": "mount"}]  # no pid namespace
            f = c.request(Msg.CREATE, 1, create_payload(cfg))
            f = c.request(Msg.SIGNAL, 1, P.signal_payload(9))
            st = c.wait_exit(1, 10)
            self.check("KILL before START (no pid ns) -> EXIT signal 9", st == 9, status_str(st))
            f = c.request(Msg.START, 1)
            self.check("START after that -> ERROR ESRCH", f.type == Msg.ERROR and P.parse_error(f.payload)[0] == 3, str(f))
        finally:
            vm.close(keep=self.debug)

    def test_network(self) -> None:
        """NETIF on QEMU's user-mode network: 10.0.2.2 is this host's loopback."""
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"hello over the network\n")

            def log_message(self, *args):
                pass

        srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        mac = "02:00:00:00:00:01"
        vm = self.vm(qemu_args=["-netdev", "user,id=n0", "-device", f"virtio-net-device,netdev=n0,mac={mac}"])
        c = vm.agent
        try:
            v4 = lambda a: socket.inet_pton(socket.AF_INET, a)  # noqa: E731
            recs = b"".join([
                P.record(Tag.NET_MAC, bytes.fromhex(mac.replace(":", ""))), P.rec_str(Tag.NET_NAME, "eth7"),
                P.rec_u32(Tag.NET_MTU, 1400),
                P.record(Tag.NET_ADDR, struct.pack("<II", 4, 24) + v4("10.0.2.15")),
                P.record(Tag.NET_ADDR, struct.pack("<II", socket.AF_INET6, 64) + socket.inet_pton(socket.AF_INET6, "fd00::15")),
                P.record(Tag.NET_ROUTE, struct.pack("<II", 4, 0) + v4("0.0.0.0") + v4("10.0.2.2")),
                P.record(Tag.NET_ROUTE, struct.pack("<II", 4, 16) + v4("192.168.0.0")),
            ])
            f = c.request(Msg.NETIF, 0, recs)
            self.check("NETIF ok", f.type == Msg.OK, str(f))
            cfg = make_config(["sh", "-c",
                "ip -o addr | awk '{print $2, $4}'; ip route; cat /sys/class/net/eth7/mtu; "
                f"wget -q -O - http://10.0.2.2:{srv.server_port}/; ping -c 1 -W 2 127.0.0.1 >/dev/null && echo lo ok"])
            for kind in ("bounding", "effective", "permitted"):  # busybox ping opens a raw socket
                cfg["process"]["capabilities"][kind].append("CAP_NET_RAW")
            f = c.request(Msg.CREATE, 1, create_payload(cfg))
            c.request(Msg.START, 1)
            st = c.wait_exit(1, 30)
            out = c.out[1][1].decode()
            want = ["lo 127.0.0.1/8", "eth7 10.0.2.15/24", "eth7 fd00::15/64", "default via 10.0.2.2 dev eth7",
                    "192.168.0.0/16 dev eth7 scope link", "\n1400\n", "hello over the network", "lo ok"]
            self.check("NIC renamed, MTU, v4+v6 addresses, routes, TCP to the host, lo up",
                       st == 0 and all(w in out for w in want), f"{status_str(st)} missing {[w for w in want if w not in out]}\n{out}")
        finally:
            vm.close(keep=self.debug)
            srv.shutdown()


def cmd_selftest(a) -> int:
    rootfs = a.rootfs or make_rootfs(tempfile.mkdtemp(prefix="runv-rootfs-"))
    t = Selftest(rootfs, a.debug)
    for name in [n for n in dir(t) if n.startswith("test_")]:
        if a.k and a.k not in name:
            continue
        print(f"# {name}")
        try:
            getattr(t, name)()
        except Exception as e:  # noqa: BLE001
            t.check(name, False, f"{type(e).__name__}: {e}")
    print(f"# {t.passed} passed, {t.failed} failed")
    shutil.rmtree(t.share, ignore_errors=True)
    if not a.rootfs:
        shutil.rmtree(rootfs, ignore_errors=True)
    return 1 if t.failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--rootfs")
    r.add_argument("-t", action="store_true", help="give the process a terminal")
    r.add_argument("--hostname", default="runv")
    r.add_argument("--user")
    r.add_argument("--cwd", default="/")
    r.add_argument("--env", action="append", default=[])
    r.add_argument("--debug", action="store_true", help="runv.debug on the kernel command line; keep the logs")
    r.add_argument("cmd", nargs="+")
    s = sub.add_parser("selftest")
    s.add_argument("--rootfs")
    s.add_argument("--debug", action="store_true")
    s.add_argument("-k", help="only the tests whose name contains this")
    a = ap.parse_args()
    return cmd_run(a) if a.command == "run" else cmd_selftest(a)


if __name__ == "__main__":
    sys.exit(main())
