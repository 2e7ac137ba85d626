"""VM templates: a guest booted once per machine shape and saved, then restored
for each new container instead of booting (about 4x faster to the agent's READY).

A template is the migration stream of a VM that booted to its agent's READY with
the devices of the containers' VMs, in the same order, but with every 9p share
on an empty directory. The shares are never mounted in the template (the agent
mounts them at CREATE), which is what lets virtio-9p migrate at all; so a
restored VM may have other share paths, another console file and new fds for
its agent port and monitor. The 9p tags, the port name, the memory, the vCPUs,
the accelerator, the kernel, the initramfs and QEMU may not differ: they make
the template's key.

Restoring is QEMU started with the same argv plus `-incoming fd:N` (the template
file, read-only). The template was saved running, so the guest resumes as soon
as the stream is loaded. Its agent already sent READY, to the template's host:
the new host sends HELLO (its wall clock and fresh entropy), and the agent
answers READY again (docs/protocol.md).

A shared template (RUNV_TEMPLATES=shared, runv.qemu.sharedram) keeps its guest
RAM out of the stream: the VMs restored from it map one sealed copy of it.

On disk, under `$RUNV_CACHE/templates/` (default /var/cache/runv):
    <key>/state        the migration stream
    <key>/meta.json    the shape, the size, and what making it cost
    <key>/ram          a shared template's guest RAM (sparse); <key>/holders/ its live holders
    <key>.lock         flock'ed by whoever makes <key>
    <key>.failed       making it failed (the reason); no retry for FAILED_TTL s
    .<key>.XXXXXX/     a template being made (renamed to <key>/ when complete)

A NIC is templated on no network (a hub port) with a MAC of its index
(cmdline.probe_mac): the guest reads a virtio-net MAC once, at probe, so a
restored guest has that one until its agent gives the NIC the container's
(NETIF's NET_PROBE_MAC), which virtio-net passes on to QEMU.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any

from runv import faultpoint
from runv.agent import protocol as P
from runv.agent.link import Handshake, hello
from runv.errors import QemuError
from runv.files import write_atomic
from runv.qemu import sharedram
from runv.qemu import vm as qemu_vm
from runv.qemu.cmdline import Balloon, Console, Device, Machine, Qmp, SerialPort, Share, Tap

FORMAT = 5               # bump when what a template holds, or how it is made, changes
FAILED_TTL = 3600.0      # seconds before making a failed shape is tried again
BOOT_TIMEOUT = 60.0      # the template VM's boot to READY
SAVE_TIMEOUT = 60.0      # writing the migration stream
RESTORE_TIMEOUT = 30.0   # a restored VM running again
STATE = "state"
IGNORE_SHARED = {"capability": "x-ignore-shared", "state": True}


def root() -> str:
    return os.path.join(os.environ.get("RUNV_CACHE", "/var/cache/runv"), "templates")


# --- the key ---------------------------------------------------------------------

def _file_id(path: str) -> list[Any]:
    st = os.stat(path)
    return [os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino]


def _host_id(accel: str) -> list[str]:
    """Under KVM the guest runs with `-cpu host`: the CPU and the host kernel matter."""
    if accel != "kvm":
        return []
    ident = [os.uname().release]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    ident.append(line.split(":", 1)[1].strip())
                if len(ident) == 3:
                    break
    except OSError:
        pass
    return ident


def shape(machine: Machine, port_name: str = P.PORT_NAME) -> dict[str, Any]:
    """Everything a restored VM must share with its template. The devices are
    those `vm.launch` runs: the console, the agent port and QMP, then the machine's."""
    devices: list[Device] = [Console(""), SerialPort(port_name, -1), Qmp(-1), *machine.devices]
    return {
        "format": FORMAT,
        "qemu": _file_id(machine.qemu),
        "kernel": _file_id(machine.kernel),
        "initrd": _file_id(machine.initrd),
        "accel": machine.accel,
        "machine": machine.machine_type(),  # a PIT or not: its state is in the stream
        "host": _host_id(machine.accel),
        "memory_mb": machine.memory_mb,
        "ram": "shared" if machine.shared_ram else "private",  # runv.qemu.sharedram
        "cpus": machine.cpus,
        "kernel_args": machine.kernel_args,
        "devices": [d.shape() for d in devices],
    }


def template_key(machine: Machine, port_name: str = P.PORT_NAME) -> str:
    """A short hash of the machine's shape (raises OSError if QEMU, the kernel or
    the initramfs is missing)."""
    text = json.dumps(shape(machine, port_name), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def supported(machine: Machine) -> bool:
    """Only devices whose state a template can hold may follow the ones vm.launch adds (not a probe boot)."""
    return (all(d.templatable for d in machine.devices)
            and "runv.probe" not in machine.kernel_args)


# --- ensure: find or make the template ---------------------------------------------

def ensure(machine: Machine, port_name: str = P.PORT_NAME, wait: bool = False,
           retry: bool = False) -> str | None:
    """The path of the template for this machine's shape, made now if missing.
    None when the shape cannot be templated, when making it failed within
    FAILED_TTL (unless `retry`), or while another process is making it (unless
    `wait`): then boot normally."""
    if not supported(machine):
        return None
    try:
        key = template_key(machine, port_name)
    except OSError:
        return None
    base = root()
    state = os.path.join(base, key, STATE)
    if os.path.exists(state):
        return state
    if not retry and _failed_lately(base, key):
        return None
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        lock = os.open(os.path.join(base, f"{key}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError:
            return None  # someone is making it right now (EWOULDBLOCK)
        if os.path.exists(state):
            return state
        if not retry and _failed_lately(base, key):
            return None
        try:
            _make(machine, port_name, base, key)
        except Exception as e:  # noqa: BLE001 - any failure: boot normally from now on
            _write_failed(base, key, f"{type(e).__name__}: {e}")
            return None
        return state
    finally:
        os.close(lock)


def _failed_lately(base: str, key: str) -> bool:
    try:
        return time.time() - os.stat(os.path.join(base, f"{key}.failed")).st_mtime < FAILED_TTL
    except OSError:
        return False


def _write_failed(base: str, key: str, reason: str) -> None:
    from runv import log

    log.debug(f"template {key}: {reason}")
    try:
        write_atomic(os.path.join(base, f"{key}.failed"),
                     json.dumps({"reason": reason, "time": time.time()}), fsync=True)
    except OSError:
        pass


def _make(machine: Machine, port_name: str, base: str, key: str) -> None:
    """Boot, save and check one template; publish it as base/key. Called under the key's lock."""
    for name in os.listdir(base):  # what a killed maker of this key left behind
        if name.startswith(f".{key}."):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    stage = tempfile.mkdtemp(prefix=f".{key}.", dir=base)
    try:
        meta = _boot_and_save(machine, port_name, stage, key)
        meta["restore_s"] = _check(machine, port_name, stage)
        meta["key"] = key
        for name in os.listdir(stage):
            if name not in (STATE, sharedram.RAM):
                p = os.path.join(stage, name)
                shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
        write_atomic(os.path.join(stage, "meta.json"), json.dumps(meta, indent=1), fsync=True)
        final = os.path.join(base, key)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(stage, final)
        os.chmod(final, 0o700)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    try:
        os.unlink(os.path.join(base, f"{key}.failed"))
    except OSError:
        pass
    _prune(base, key, meta["shape"])


def _with_shares(machine: Machine, path: str) -> Machine:
    """The machine as its template runs it: every share on an empty directory, every NIC on no network."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    return dataclasses.replace(machine, devices=[
        dataclasses.replace(d, path=path, entry="") if isinstance(d, Share)
        else d.for_template() if isinstance(d, Tap) else d for d in machine.devices])


def _boot_and_save(machine: Machine, port_name: str, stage: str, key: str) -> dict[str, Any]:
    from runv.qemu.qmp import QMP

    m = _with_shares(machine, os.path.join(stage, "empty"))
    ram = sharedram.blank(machine.memory_mb * 2**20, key) if machine.shared_ram else None
    if ram is not None:
        m = dataclasses.replace(m, ram_fd=ram, ram_share=True)
    t0 = time.monotonic()
    try:
        vm = qemu_vm.launch(m, port_name, stage, extra_fds=() if ram is None else (ram,))
    except BaseException:
        if ram is not None:
            os.close(ram)
        raise
    try:
        Handshake.start(vm, BOOT_TIMEOUT)
        boot_s = time.monotonic() - t0
        qmp = QMP(vm.qmp, timeout=SAVE_TIMEOUT)
        _inflate(qmp, machine)
        # Save it running: a restored VM then runs as soon as it is loaded.
        path = os.path.join(stage, STATE)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            qmp.execute("getfd", fds=[fd], fdname="template")
        finally:
            os.close(fd)
        t1 = time.monotonic()
        if ram is not None:  # the stream leaves out the RAM on the memfd (sharedram.save keeps it)
            qmp.execute("migrate-set-capabilities", capabilities=[IGNORE_SHARED])
        qmp.execute("migrate", uri="fd:template")
        faultpoint.reached("template.saving")
        while True:
            st = qmp.execute("query-migrate")
            status = st.get("status")
            if status == "completed":
                break
            if status in ("failed", "cancelled"):
                raise QemuError(f"saving the template failed: {st.get('error-desc', status)}")
            if time.monotonic() - t1 > SAVE_TIMEOUT:
                raise QemuError(f"saving the template took over {SAVE_TIMEOUT:.0f} s")
            time.sleep(0.01)
        save_s = time.monotonic() - t1
        try:
            qmp.execute("quit")
        except (QemuError, OSError):
            pass
        vm.wait(10)
        if ram is not None:
            sharedram.save(ram, os.path.join(stage, sharedram.RAM))
    finally:
        vm.kill()
        vm.agent.close()
        vm.qmp.close()
        os.close(vm.pidfd)
        if ram is not None:
            os.close(ram)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return {"shape": shape(machine, port_name), "size": os.path.getsize(path),
            "boot_s": round(boot_s, 3), "save_s": round(save_s, 3), "created": time.time()}


def _inflate(qmp: Any, machine: Machine) -> None:
    """Give the template's guest what its Balloon says, and wait until it has
    given up the rest: the pages it gives are not in the stream, and a restored
    guest has nothing left to inflate."""
    target = next((d.memory_mb for d in machine.devices if isinstance(d, Balloon)), 0)
    if not 0 < target < machine.memory_mb:
        return
    qmp.execute("balloon", value=target * 2**20)
    deadline = time.monotonic() + BOOT_TIMEOUT
    while int(qmp.execute("query-balloon")["actual"]) > target * 2**20:
        if time.monotonic() > deadline:
            raise QemuError(f"the template's balloon did not reach {target} MiB in {BOOT_TIMEOUT:.0f} s")
        time.sleep(0.01)


def _check(machine: Machine, port_name: str, stage: str) -> float:
    """Restore the new template once, elsewhere, to its READY; the seconds it took."""
    m = _with_shares(machine, os.path.join(stage, "check-share"))
    run = os.path.join(stage, "check")
    os.mkdir(run, 0o700)
    t0 = time.monotonic()
    vm = restore(m, os.path.join(stage, STATE), port_name, run)
    try:
        Handshake.start(vm, RESTORE_TIMEOUT)
        return round(time.monotonic() - t0, 3)
    finally:
        vm.kill()
        vm.agent.close()
        vm.qmp.close()
        os.close(vm.pidfd)
        if vm.ram_fd is not None:
            os.close(vm.ram_fd)


def _prune(base: str, keep: str, current: dict[str, Any]) -> None:
    """Remove the templates made from an older build of the same QEMU, kernel or initramfs paths."""
    for name in os.listdir(base):
        if name == keep or name.startswith(".") or not os.path.isdir(os.path.join(base, name)):
            continue
        try:
            with open(os.path.join(base, name, "meta.json")) as f:
                old = json.load(f)["shape"]
        except (OSError, ValueError, KeyError):
            continue
        stale = old.get("format") != FORMAT or any(
            old.get(k, [None])[0] == current[k][0] and old.get(k) != current[k]
            for k in ("qemu", "kernel", "initrd"))
        if not stale:
            continue
        try:
            lock = os.open(os.path.join(base, f"{name}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
            os.unlink(os.path.join(base, f"{name}.lock"))
        except OSError:
            pass
        finally:
            os.close(lock)


def discard(template_path: str, reason: str) -> None:
    """Drop a template that failed to restore (truncated, corrupt): the next
    container of its shape makes it again, and `_make` checks that the new one
    restores, so a shape that cannot be templated ends as `.failed`, not in a loop."""
    from runv import log

    d = os.path.dirname(template_path)
    log.debug(f"template {os.path.basename(d)} discarded: restore failed: {reason}")
    shutil.rmtree(d, ignore_errors=True)


# --- restore -------------------------------------------------------------------------

def restore(machine: Machine, template_path: str, port_name: str, state_dir: str) -> qemu_vm.VM:
    """A VM like vm.launch's, resumed from the template instead of booted: once
    the guest runs it gets HELLO, so that its READY follows."""
    made_for = os.path.basename(os.path.dirname(template_path))
    try:
        key = template_key(machine, port_name)
        fd = os.open(template_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise QemuError(f"template {template_path}: {e.strerror}") from None
    if made_for != key and not made_for.startswith(f".{key}."):
        os.close(fd)
        raise QemuError(f"template {template_path} was not made for this machine ({key})")
    ram = None
    try:
        if machine.shared_ram:
            ram = sharedram.obtain(os.path.dirname(template_path), key)
            machine = dataclasses.replace(machine, ram_fd=ram, ram_share=False)
        # QEMU 7.2 takes x-ignore-shared over QMP only: a shared template's stream waits for it.
        vm = qemu_vm.launch(machine, port_name, state_dir,
                            extra_args=["-incoming", f"fd:{fd}" if ram is None else "defer"],
                            extra_fds=(fd,) if ram is None else (fd, ram))
    except OSError as e:
        if ram is not None:
            os.close(ram)
        raise QemuError(f"template {template_path}: its shared RAM: {e.strerror}") from None
    except BaseException:
        if ram is not None:
            os.close(ram)
        raise
    finally:
        os.close(fd)
    vm.ram_fd = ram  # the caller holds it for as long as the VM runs (sharedram.hold)
    try:
        if ram is not None:
            _incoming(vm, fd)
        greet(vm)
    except BaseException:
        vm.kill()
        if ram is not None:
            os.close(ram)
        raise
    return vm


def _incoming(vm: qemu_vm.VM, fd: int) -> None:
    """Load a shared template's stream (QEMU's fd `fd`): its RAM is already mapped."""
    from runv.qemu.qmp import QMP

    qmp = QMP(vm.qmp, timeout=RESTORE_TIMEOUT)
    try:
        qmp.execute("migrate-set-capabilities", capabilities=[IGNORE_SHARED])
        qmp.execute("migrate-incoming", uri=f"fd:{fd}")
    except (QemuError, OSError) as e:
        vm.wait(2.0)
        raise QemuError(f"restoring the VM failed: {vm.failure() if vm.exited() else e}") from None


def greet(vm: qemu_vm.VM, timeout: float = RESTORE_TIMEOUT) -> None:
    """Wait until the restored guest runs, then send HELLO: the clock it takes
    is the host's as the guest resumes, not as QEMU started."""
    from runv.qemu.qmp import QMP

    qmp = QMP(vm.qmp, timeout=timeout)
    try:
        if qmp.execute("query-status").get("status") != "running":
            qmp.wait_event("RESUME", timeout)
    except (QemuError, OSError) as e:
        vm.wait(2.0)
        raise QemuError(f"restoring the VM failed: {vm.failure() if vm.exited() else e}") from None
    hello(vm.agent)
