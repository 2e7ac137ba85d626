"""The QEMU process: launch it in its jail with its fds, watch it, stop it."""
from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from runv.errors import QemuError
from runv.guest_text import printable
from runv.host import syscalls
from runv.qemu import jail as qemu_jail
from runv.qemu.cmdline import Console, Machine, Qmp, SerialPort, Tap
from runv.qemu.logs import CappedLog, Drain

JAIL_DIR = "jail"  # in the state dir: an empty directory, the jail's tmpfs goes on it in QEMU's namespace


@dataclass
class VM:
    proc: subprocess.Popen[bytes]
    agent: socket.socket   # our end of the virtio-serial port
    qmp: socket.socket     # our end of the QMP monitor
    pidfd: int
    log_path: str
    console_path: str
    logs: Drain | None = None
    ram_fd: int | None = None  # a shared template's RAM (runv.qemu.sharedram), held while the VM runs

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def failure(self) -> str:
        """The most telling line QEMU or the guest left, for an error message.
        The guest writes the console: only its tail is read, and what is shown is escaped."""
        if self.logs is not None and self.exited():
            self.logs.join(2.0)  # what QEMU wrote last is in the files
        for path in (self.log_path, self.console_path):
            line = _last_line(path)
            if line:
                return printable(line)
        return f"exit status {self.proc.returncode}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def wait(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False


def launch(machine: Machine, port_name: str, state_dir: str,
           extra_args: Sequence[str] = (), extra_fds: Sequence[int] = ()) -> VM:
    """Start QEMU, jailed (runv.qemu.jail), with the console, the agent port and
    QMP put in front of the machine's devices. `extra_args` go after the argv
    (template.restore adds `-incoming`), and `extra_fds` are passed on to QEMU
    as they are, as are the taps' fds."""
    agent_host, agent_vm = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    qmp_host, qmp_vm = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    console_host, console_vm = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    log_r, log_w = os.pipe2(os.O_CLOEXEC)
    console = os.path.join(state_dir, "console.log")
    log_path = os.path.join(state_dir, "qemu.log")
    logs = Drain({console_host.detach(): CappedLog(console), log_r: CappedLog(log_path)})
    # A copy: the caller's machine stays as it was (a failed restore falls back to a boot).
    machine = dataclasses.replace(machine, devices=[
        Console(fd=console_vm.fileno()), SerialPort(port_name, agent_vm.fileno()), Qmp(qmp_vm.fileno()),
        *machine.devices])
    ours = (agent_vm, qmp_vm, console_vm)
    taps = (d.fd for d in machine.devices if isinstance(d, Tap) and d.fd is not None)
    fds = (*(s.fileno() for s in ours), *taps, *extra_fds)
    try:
        root = os.path.join(state_dir, JAIL_DIR)
        os.makedirs(root, 0o700, exist_ok=True)
        jail, jailed = qemu_jail.for_machine(machine, root)
        syscalls._libc()  # loaded before the fork, not in the child
        proc = subprocess.Popen(
            jailed.argv() + list(extra_args), stdin=subprocess.DEVNULL, stdout=log_w, stderr=log_w,
            pass_fds=fds, preexec_fn=jail.enter, env=jail.env, cwd="/")
    except (OSError, subprocess.SubprocessError) as e:
        os.close(log_w)
        for s in (*ours, agent_host, qmp_host):
            s.close()
        logs.start()
        logs.join(2.0)
        if isinstance(e, OSError):
            reason = e.strerror or str(e)
        else:  # the jail's setup failed in the child, and said why on its stderr
            reason = _last_line(log_path) or "its jail could not be set up"
        raise QemuError(f"cannot start {machine.qemu}: {reason}") from None
    os.close(log_w)
    for s in ours:
        s.close()
    logs.start()
    return VM(proc, agent_host, qmp_host, os.pidfd_open(proc.pid), log_path, console, logs)


TAIL = 65536


def _last_line(path: str) -> str:
    """The last non-blank line in the last TAIL bytes of `path` ("" if none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL))
            tail = f.read(TAIL)
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else ""
