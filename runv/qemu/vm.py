"""The QEMU process: launch it with its fds, watch it, stop it."""
from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from typing import Sequence

from runv import syscalls
from runv.errors import QemuError
from runv.guest_text import printable
from runv.qemu.cmdline import Console, Machine, Qmp, SerialPort


@dataclass
class VM:
    proc: subprocess.Popen
    agent: socket.socket   # our end of the virtio-serial port
    qmp: socket.socket     # our end of the QMP monitor
    pidfd: int
    log_path: str
    console_path: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def failure(self) -> str:
        """The most telling line QEMU or the guest left, for an error message.
        The guest writes the console: only its tail is read, and what is shown is escaped."""
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
    """Start QEMU with the console, the agent port and QMP put in front of the
    machine's devices. `extra_args` go after the argv (template.restore adds
    `-incoming`), and `extra_fds` are passed on to QEMU as they are."""
    agent_host, agent_vm = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    qmp_host, qmp_vm = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    console = os.path.join(state_dir, "console.log")
    log_path = os.path.join(state_dir, "qemu.log")
    # A copy: the caller's machine stays as it was (a failed restore falls back to a boot).
    machine = dataclasses.replace(machine, devices=[
        Console(console), SerialPort(port_name, agent_vm.fileno()), Qmp(qmp_vm.fileno()), *machine.devices])
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                machine.argv() + list(extra_args), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=(agent_vm.fileno(), qmp_vm.fileno(), *extra_fds), preexec_fn=_die_with_parent)
        except OSError as e:
            raise QemuError(f"cannot start {machine.qemu}: {e.strerror}") from None
    agent_vm.close()
    qmp_vm.close()
    return VM(proc, agent_host, qmp_host, os.pidfd_open(proc.pid), log_path, console)


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


def _die_with_parent() -> None:
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
