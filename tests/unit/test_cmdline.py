"""Golden argv for QEMU."""
from runv.qemu import cmdline
from runv.qemu.cmdline import Console, Machine, Qmp, SerialPort, Share


def test_machine_argv(monkeypatch):
    monkeypatch.setattr(cmdline, "_tsc_khz", 2596122)
    m = Machine("/usr/bin/qemu-system-x86_64", "/k", "/i", memory_mb=256, cpus=2,
                devices=[Console("/s/console.log"), SerialPort("runv.agent", 5), Qmp(6),
                         Share("rootfs", "/b/rootfs", readonly=True)])
    assert m.argv() == [
        "/usr/bin/qemu-system-x86_64",
        "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=on",
        "-accel", "tcg", "-cpu", "max", "-m", "256", "-smp", "2",
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-kernel", "/k", "-initrd", "/i",
        "-append", "console=ttyS0 reboot=t panic=-1 quiet clocksource=jiffies tsc_early_khz=2596122",
        "-chardev", "file,id=con,path=/s/console.log", "-serial", "chardev:con",
        "-device", "virtio-serial-device",
        "-chardev", "socket,id=ch-runv-agent,fd=5",
        "-device", "virtserialport,chardev=ch-runv-agent,name=runv.agent",
        "-chardev", "socket,id=qmp,fd=6", "-mon", "chardev=qmp,mode=control",
        "-fsdev", "local,id=fs-rootfs,path=/b/rootfs,security_model=none,readonly=on",
        "-device", "virtio-9p-device,fsdev=fs-rootfs,mount_tag=rootfs",
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    ]


def test_kvm_uses_host_cpu():
    argv = Machine("q", "k", "i", accel="kvm").argv()
    assert argv[argv.index("-accel") + 1] == "kvm" and argv[argv.index("-cpu") + 1] == "host"
