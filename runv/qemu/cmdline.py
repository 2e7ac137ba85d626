"""QEMU's argv, built from small device values that each know their arguments."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

# tsc=reliable: the guest keeps the TSC as its clocksource (no watchdog to mark
# it unstable when the host is busy and fall back to jiffies), so tickless idle
# works: an idle guest takes no timer interrupts, which under TCG cost the host.
KERNEL_ARGS = "console=ttyS0 reboot=t panic=-1 quiet tsc=reliable"
TB_SIZE_MB = 32
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


def opt(value: str) -> str:
    """A value inside a QEMU `key=value,...` option string: a comma is doubled,
    or the rest of the value would be read as more options (`path=/x,path=/etc`).
    -kernel, -initrd and -append take their argument as it is: never pass them here."""
    return value.replace(",", ",,")


class Device(Protocol):
    """A QEMU device: its arguments, and what of it a VM template must match
    (runv.qemu.template: the host side, such as paths and fds, may differ)."""
    templatable: ClassVar[bool]

    def args(self) -> list[str]: ...
    def shape(self) -> list[Any]: ...


@dataclass(frozen=True)
class Share:
    """A host path exported over virtio-9p. Without `entry`, `path` is a directory
    exported as it is (the rootfs). With one, the export is a directory holding
    `path` alone, under the name `entry` (a bind's source, file or directory): QEMU's
    jail (runv.qemu.jail) builds it. `recursive`: the mounts below `path` too.
    `pod`: the pod share, an empty tmpfs of the jail that the next containers of
    a pod are bound into later (runv.qemu.podshare); `path` is unused."""
    tag: str
    path: str
    readonly: bool = False
    entry: str = ""
    recursive: bool = True
    pod: bool = False
    templatable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.entry in (".", "..") or "/" in self.entry or "\0" in self.entry:
            raise ValueError(f"share {self.tag}: {self.entry!r} is not a name")

    def shape(self) -> list[Any]:
        return ["share", self.tag]  # the path and read-only live on the host side only

    def args(self) -> list[str]:
        # remap: the export may cross host mounts (a bind's entry is one), whose
        # inode numbers would collide in the guest.
        ro = ",readonly=on" if self.readonly else ""
        fs = opt(f"fs-{self.tag}")
        return ["-fsdev", f"local,id={fs},path={opt(self.path)},security_model=none,multidevs=remap{ro}",
                "-device", f"virtio-9p-device,fsdev={fs},mount_tag={opt(self.tag)}"]


@dataclass(frozen=True)
class SerialPort:
    """A virtio-serial port on a chardev socket already connected (an inherited fd)."""
    name: str
    fd: int
    templatable: ClassVar[bool] = True

    def shape(self) -> list[Any]:
        return ["serial", self.name]

    def args(self) -> list[str]:
        cid = opt(f"ch-{self.name.replace('.', '-')}")
        return ["-device", "virtio-serial-device",
                "-chardev", f"socket,id={cid},fd={self.fd}",
                "-device", f"virtserialport,chardev={cid},name={opt(self.name)}"]


@dataclass(frozen=True)
class Qmp:
    fd: int
    templatable: ClassVar[bool] = True

    def shape(self) -> list[Any]:
        return ["qmp"]

    def args(self) -> list[str]:
        return ["-chardev", f"socket,id=qmp,fd={self.fd}", "-mon", "chardev=qmp,mode=control"]


@dataclass(frozen=True)
class Console:
    """The guest's serial console: appended to a log file, or written to a
    socket already connected (an inherited fd, read by the shim)."""
    path: str = ""
    fd: int | None = None
    templatable: ClassVar[bool] = True

    def shape(self) -> list[Any]:
        return ["console"]

    def args(self) -> list[str]:
        backend = f"socket,id=con,fd={self.fd}" if self.fd is not None else f"file,id=con,path={opt(self.path)}"
        return ["-chardev", backend, "-serial", "chardev:con"]


def probe_mac(index: int) -> str:
    """The MAC of NIC `index` in a VM template: a guest restored from it has
    that one until its agent gives the NIC its own (NETIF's NET_PROBE_MAC)."""
    return f"02:72:75:6e:76:{index:02x}"


@dataclass(frozen=True)
class Tap:
    """A tap the shim opened (an inherited fd): QEMU needs neither /dev/net/tun nor NET_ADMIN.
    Without an fd, a NIC on no network (a hub port): a template's, with probe_mac."""
    ifname: str
    mac: str
    index: int
    fd: int | None
    templatable: ClassVar[bool] = True

    def shape(self) -> list[Any]:
        return ["tap", self.index]

    def args(self) -> list[str]:
        nid = f"net{self.index}"
        backend = f"tap,id={nid},fd={self.fd}" if self.fd is not None else f"hubport,id={nid},hubid={self.index}"
        return ["-netdev", backend, "-device", f"virtio-net-device,netdev={nid},mac={opt(self.mac)}"]

    def for_template(self) -> Tap:
        return Tap(self.ifname, probe_mac(self.index), self.index, None)


@dataclass(frozen=True)
class Balloon:
    """A virtio balloon: the VM boots with room to grow, and the host sets how
    much of its RAM the guest has (QMP `balloon`); no deflate on OOM, so the
    guest never takes back on its own what the host withholds. With free page
    reporting, the guest tells QEMU which of its pages are free (in blocks of
    2 MiB, 2 s after it freed them), and QEMU gives them back to the host: a
    container that once filled its memory does not keep the host's. `memory_mb`: what
    the guest has at first (0: all its RAM); a template is saved with its
    balloon so inflated, so that a VM restored from it starts at that size
    without the work of inflating (about 0.1 s of the guest's CPU under TCG)."""
    memory_mb: int = 0
    reporting: bool = True  # off with shared guest RAM: QEMU 7.2 would punch holes in the shared file
    templatable: ClassVar[bool] = True

    def shape(self) -> list[Any]:
        return ["balloon", self.memory_mb, self.reporting]

    def args(self) -> list[str]:
        return ["-device", f"virtio-balloon-device,free-page-reporting={'on' if self.reporting else 'off'}"]


@dataclass(frozen=True)
class PanicNotifier:
    """pvpanic: the guest kernel tells QEMU it panicked, and QEMU exits. The
    guest's own `panic=-1` does as much, but a container's config may set
    kernel.panic=0, which would leave a panicked guest spinning for ever."""
    templatable: ClassVar[bool] = True

    def shape(self) -> list[Any]:
        return ["pvpanic"]

    def args(self) -> list[str]:
        return ["-device", "pvpanic", "-action", "panic=exit-failure"]


@dataclass
class Machine:
    qemu: str
    kernel: str
    initrd: str
    accel: str = "tcg"
    memory_mb: int = 128
    cpus: int = 1
    kernel_args: str = KERNEL_ARGS
    devices: list[Device] = field(default_factory=list)
    sandbox: bool = True
    # Guest RAM on a memfd of a shared template (runv.qemu.sharedram): shared_ram
    # makes the template's shape; ram_fd (inherited) is mapped shared by the
    # template's QEMU (ram_share) and private by the VMs restored from it.
    shared_ram: bool = False
    ram_fd: int | None = None
    ram_share: bool = False

    def __post_init__(self) -> None:
        # Every VM has one (and so every template's shape names it).
        if not any(isinstance(d, PanicNotifier) for d in self.devices):
            self.devices = [*self.devices, PanicNotifier()]

    def pit(self) -> bool:
        """Under TCG with the host's TSC rate known, the guest needs no PIT: it
        calibrates nothing against it (tsc_early_khz), and its LAPIC's
        TSC-deadline timer is the clock event, armed only when a timer is due."""
        return not (self.accel == "tcg" and host_tsc_khz())

    def machine_type(self) -> str:
        return f"microvm,x-option-roms=off,isa-serial=on,rtc=on,pit={'on' if self.pit() else 'off'}"

    def argv(self) -> list[str]:
        cpu = "host" if self.accel == "kvm" else "max"
        kernel_args, accel = self.kernel_args, self.accel
        if self.accel == "tcg":
            # QEMU's default cache is 1 GiB, which a guest that once ran a big program
            # keeps resident. 32 MiB (QEMU's old default): an idle guest fills about
            # 12 MiB of any size; 4 and 8 MiB made a busy guest up to 1.8x slower.
            accel += f",tb-size={TB_SIZE_MB}"
            if host_tsc_khz():
                # Under TCG the guest's TSC runs at the host's rate. Telling the kernel
                # spares it calibrating against the emulated PIT, which hangs the boot
                # when the host is busy.
                kernel_args += f" tsc_early_khz={host_tsc_khz()}"
        argv = [
            self.qemu,
            "-M", self.machine_type(),
            "-accel", accel, "-cpu", cpu,
            "-m", str(self.memory_mb), "-smp", str(self.cpus),
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-kernel", self.kernel, "-initrd", self.initrd, "-append", kernel_args,
        ]
        if self.ram_fd is not None:
            share = "on" if self.ram_share else "off"
            argv += ["-object", f"memory-backend-file,id=ram,size={self.memory_mb}M,"
                                f"mem-path=/proc/self/fd/{self.ram_fd},share={share}",
                     "-machine", "memory-backend=ram"]
        for dev in self.devices:
            argv += dev.args()
        if self.sandbox:
            argv += ["-sandbox", SANDBOX]
        return argv


_tsc_khz: int | None = None


def host_tsc_khz() -> int:
    global _tsc_khz
    if _tsc_khz is None:
        _tsc_khz = 0
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("cpu MHz"):
                        _tsc_khz = int(float(line.split(":")[1]) * 1000)
                        break
        except (OSError, ValueError):
            pass
    return _tsc_khz
