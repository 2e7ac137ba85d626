"""Golden argv for QEMU."""
from runv.qemu import cmdline
from runv.qemu.cmdline import Balloon, Console, Machine, Qmp, SerialPort, Share, Tap


def test_machine_argv(monkeypatch):
    monkeypatch.setattr(cmdline, "_tsc_khz", 2596122)
    m = Machine("/usr/bin/qemu-system-x86_64", "/k", "/i", memory_mb=256, cpus=2,
                devices=[Console("/s/console.log"), SerialPort("runv.agent", 5), Qmp(6),
                         Share("rootfs", "/b/rootfs", readonly=True), Balloon()])
    assert m.argv() == [
        "/usr/bin/qemu-system-x86_64",
        "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=off",
        "-accel", "tcg,tb-size=32", "-cpu", "max", "-m", "256", "-smp", "2",
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-kernel", "/k", "-initrd", "/i",
        "-append", "console=ttyS0 reboot=t panic=-1 quiet tsc=reliable tsc_early_khz=2596122",
        "-chardev", "file,id=con,path=/s/console.log", "-serial", "chardev:con",
        "-device", "virtio-serial-device",
        "-chardev", "socket,id=ch-runv-agent,fd=5",
        "-device", "virtserialport,chardev=ch-runv-agent,name=runv.agent",
        "-chardev", "socket,id=qmp,fd=6", "-mon", "chardev=qmp,mode=control",
        "-fsdev", "local,id=fs-rootfs,path=/b/rootfs,security_model=none,multidevs=remap,readonly=on",
        "-device", "virtio-9p-device,fsdev=fs-rootfs,mount_tag=rootfs",
        "-device", "virtio-balloon-device,free-page-reporting=on",
        "-device", "pvpanic", "-action", "panic=exit-failure",  # every machine has it
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    ]


def test_kvm_uses_host_cpu():
    argv = Machine("q", "k", "i", accel="kvm").argv()
    assert argv[argv.index("-accel") + 1] == "kvm" and argv[argv.index("-cpu") + 1] == "host"


def test_the_pit_stays_where_the_guest_may_calibrate_against_it(monkeypatch):
    """No PIT only under TCG with the host's TSC rate given to the guest."""
    monkeypatch.setattr(cmdline, "_tsc_khz", 2596122)
    assert Machine("q", "k", "i", accel="kvm").argv()[2].endswith(",pit=on")
    assert Machine("q", "k", "i", accel="tcg").argv()[2].endswith(",pit=off")
    monkeypatch.setattr(cmdline, "_tsc_khz", 0)
    argv = Machine("q", "k", "i", accel="tcg").argv()
    assert argv[2].endswith(",pit=on") and "tsc_early_khz" not in argv[argv.index("-append") + 1]


def test_comma_in_a_share_path_cannot_add_options():
    """A bundle at /tmp/b,path=/etc must export /tmp/b,path=/etc, not /etc."""
    assert Share("rootfs", "/tmp/b,path=/etc/rootfs").args() == [
        "-fsdev", "local,id=fs-rootfs,path=/tmp/b,,path=/etc/rootfs,security_model=none,multidevs=remap",
        "-device", "virtio-9p-device,fsdev=fs-rootfs,mount_tag=rootfs"]
    ro = Share("b0", "/s,readonly=off", readonly=True).args()
    assert ro[1] == "local,id=fs-b0,path=/s,,readonly=off,security_model=none,multidevs=remap,readonly=on"


def test_comma_in_the_console_path_is_escaped():
    assert Console("/run/x,path=/etc/passwd/console.log").args() == [
        "-chardev", "file,id=con,path=/run/x,,path=/etc/passwd/console.log", "-serial", "chardev:con"]


def test_a_tap_by_fd_and_its_mac_escaped():
    """The tap is an fd: its name never reaches QEMU."""
    assert Tap("t,script=/x", "02:00:00:00:00:01,x=y", 0, fd=7).args() == [
        "-netdev", "tap,id=net0,fd=7",
        "-device", "virtio-net-device,netdev=net0,mac=02:00:00:00:00:01,,x=y"]


def test_comma_in_a_serial_port_name_is_escaped():
    assert SerialPort("a,b", 5).args()[-1] == "virtserialport,chardev=ch-a,,b,name=a,,b"


def test_kernel_initrd_and_append_are_literal(monkeypatch):
    """QEMU reads -kernel, -initrd and -append as they are: no escaping there."""
    monkeypatch.setattr(cmdline, "_tsc_khz", 0)
    argv = Machine("q", "/a,b/k", "/a,b/i", kernel_args="x=1,2").argv()
    assert argv[argv.index("-kernel") + 1] == "/a,b/k"
    assert argv[argv.index("-initrd") + 1] == "/a,b/i"
    assert argv[argv.index("-append") + 1] == "x=1,2"


def test_every_machine_has_one_panic_notifier():
    import dataclasses

    from runv.qemu.cmdline import PanicNotifier

    m = Machine("q", "k", "i", devices=[Balloon()])
    again = dataclasses.replace(m, devices=[Console("c"), *m.devices])
    assert [type(d) for d in again.devices] == [Console, Balloon, PanicNotifier]
    assert Machine("q", "k", "i").argv().count("pvpanic") == 1
