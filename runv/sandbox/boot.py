"""Boot: everything from a config to a guest whose agent has created the
container (its init waiting for START). The createRuntime, prestart and
createContainer hooks run here, the shares named, the NICs joined to
taps, and the VM restored from a template or booted."""
from __future__ import annotations

import os
from typing import Any

from runv import faultpoint, log
from runv.agent import protocol as P
from runv.agent.link import Handshake
from runv.agent.protocol import Msg
from runv.errors import QemuError
from runv.host import proc
from runv.host.network import Nic
from runv.oci.config import Bundle, Validation
from runv.oci.pod import holds_pod, is_pod_sandbox
from runv.qemu.cmdline import Balloon, Machine, Share, Tap
from runv.qemu.vm import VM
from runv.sandbox.relay import Relay
from runv.sandbox.sandbox import INIT, Sandbox
from runv.state import State, StateDir

BOOT_TIMEOUT = 120.0      # TCG on a busy 2-core host can be slow


def boot(sd: StateDir, state: State, bundle: Bundle, stdio: Relay, host_netns: int | None,
         fresh_netns: bool, validation: Validation | None = None) -> Sandbox:
    from runv.agent.records import create_payload
    from runv.host import hooks
    from runv.oci import mounts, resources
    from runv.oci.config import explained, validating
    from runv.qemu import assets, podshare
    from runv.qemu.accel import choose
    from runv.sandbox.shares import exports

    config = bundle.config
    # With hooks to run, validate first: a hook must not see an invalid config.
    # Otherwise validating (and importing jsonschema) overlaps the VM's boot.
    validated = validation or validating(config)
    if state.hooks:
        validated()
    state.pod = holds_pod(state.annotations or {}, bool(state.netns))
    # Room for the next containers' limits (a VM of 1 GiB) only where the annotations
    # announce a pod: it costs a VM 0.1 s and 14 MiB (docs/engines.md).
    size = explained(config, resources.guest_size, config, is_pod_sandbox(state.annotations or {}))
    state.guest_memory_mb, state.guest_ram_mb = size.balloon_mb, size.ram_mb
    state.resources = dict((config.get("linux") or {}).get("resources") or {})  # `runv update` starts here
    plan = explained(config, mounts.plan, config, bundle.path)
    if state.pod:  # the pod's next containers come through the pod share
        plan.guest_dirs.append((podshare.TAG, podshare.GUEST_DIR))
    # Built before the VM starts: a config too big for one frame fails here.
    create = explained(config, create_payload, config, plan.mounts, plan.guest_dirs)
    a = assets.require()
    accel = choose(a)
    state.accel = accel.accel
    # The status these hooks see is "created", as crun and the runtime-tools suite have it.
    hook_state = {"ociVersion": config.get("ociVersion", ""), "id": state.id, "status": "created",
                  "pid": state.pid, "bundle": state.bundle, "annotations": state.annotations}
    hooks.run(state.hooks, "createRuntime", hook_state, bundle.path, host_netns)
    hooks.run(state.hooks, "prestart", hook_state, bundle.path, host_netns)
    # Checked after the hooks, and bound by QEMU's jail later still: what they
    # mounted in the rootfs or a source is exported too.
    root_ro = bool((config.get("root") or {}).get("readonly"))
    if root_ro:
        from runv.sandbox import mountpoints
        mountpoints.make(bundle.rootfs, config.get("mounts") or [])
    shares = exports(P.SHARE_ROOT_TAG, bundle.rootfs, root_ro, plan.binds)
    if state.pod:
        shares.append(Share(podshare.TAG, "", pod=True))
    nics = _join_network(state, fresh_netns, sd)
    state.taps = {nic.tap: nic.ifname for nic in nics}
    sd.write(state)
    taps: list[int] = []
    try:
        faultpoint.reached("shim.network")
        taps = _open_taps(nics)
        # A pod's VM resizes its balloon as members come and go: its RAM is never shared.
        shared = os.environ.get("RUNV_TEMPLATES") == "shared" and not is_pod_sandbox(state.annotations or {})
        machine = Machine(a.qemu, a.kernel, a.initrd, accel=accel.accel,
                          memory_mb=size.ram_mb, cpus=size.cpus, shared_ram=shared,
                          devices=[*shares, *(nic_device(nic, i, fd)
                                              for i, (nic, fd) in enumerate(zip(nics, taps, strict=True))),
                                   Balloon(size.balloon_mb if size.ram_mb > size.balloon_mb else 0,
                                           reporting=not shared)])
        log.debug(f"qemu: {' '.join(machine.argv())}")
        vm = _restore_or_boot(machine, sd)
        state.shared_ram = vm.ram_fd is not None
    except BaseException:
        leave_network(nics)
        raise
    finally:
        for fd in taps:  # QEMU holds its own
            os.close(fd)
    state.qemu_pid, state.qemu_start = vm.pid, proc.start_time(vm.pid)
    sd.write(state)
    try:
        faultpoint.reached("shim.qemu")
        if not state.hooks:
            validated()
        agent = Handshake.start(vm, BOOT_TIMEOUT)  # a QEMU that failed to start is named here
        log.debug("agent ready")
        if size.ram_mb > size.balloon_mb:
            set_balloon(vm, size.balloon_mb)
        from runv.agent.records import netif_records

        for i, nic in enumerate(nics):
            agent.call(Msg.NETIF, 0, netif_records(nic, i), BOOT_TIMEOUT)
        agent.call(Msg.CREATE, INIT, create, BOOT_TIMEOUT)
        log.debug("container created in the guest")
        hooks.run(state.hooks, "createContainer", hook_state, bundle.path, host_netns)
    except BaseException:
        vm.kill()
        leave_network(nics)
        raise
    sandbox = Sandbox(sd, state, vm, agent.decoder)
    sandbox.nics = nics
    sandbox.attach(INIT, stdio)
    sandbox.link.take(agent.pending)
    return sandbox


def set_balloon(vm: VM, memory_mb: int) -> None:
    """Give the guest `memory_mb` of its RAM: the balloon holds the rest (the
    guest's driver takes the new size as soon as it runs, at boot too)."""
    from runv.qemu.qmp import QMP

    try:
        QMP(vm.qmp).execute("balloon", value=memory_mb * 2**20)
    except OSError as e:
        raise QemuError(f"the VM stopped while starting: {vm.failure() or e.strerror}") from None


def nic_device(nic: Nic, index: int, fd: int) -> Tap:
    """QEMU's device for a NIC of the container's namespace, on its tap's open fd."""
    return Tap(ifname=nic.tap, mac=nic.mac, index=index, fd=fd)


def _restore_or_boot(machine: Machine, sd: StateDir) -> VM:
    """Restore the VM from a template of its shape (made on first use), or boot it.
    RUNV_TEMPLATES=0 always boots; =shared restores on RAM shared between VMs
    (runv.qemu.sharedram), which the shim then holds."""
    from runv.qemu import sharedram, template
    from runv.qemu import vm as qemu_vm

    tpl = template.ensure(machine) if os.environ.get("RUNV_TEMPLATES") != "0" else None
    if tpl:
        try:
            vm = template.restore(machine, tpl, P.PORT_NAME, sd.path)
            log.debug(f"restored from {tpl}")
            if vm.ram_fd is not None:
                sharedram.hold(os.path.dirname(tpl), vm.ram_fd)
            return vm
        except QemuError as e:
            log.debug(f"template {tpl} failed ({e}): booting")
            template.discard(tpl, str(e))
    return qemu_vm.launch(machine, P.PORT_NAME, sd.path)


def _join_network(state: State, fresh_netns: bool, sd: StateDir) -> list[Any]:
    """The NICs of the container's own network namespace, each joined to a tap."""
    if not state.netns:
        return []  # the host's network: the VM gets no NIC (a VM cannot share it)
    if fresh_netns and not state.hooks:
        return []  # a namespace we just made, that no hook could fill: only lo
    from runv.host import network

    if state.netns_path:
        # Recorded before the first tap is made: a shim killed in the middle of
        # setup() leaves taps that `delete` must find without their names.
        state.taps = {network.ANY_TAP: ""}
        sd.write(state)
    try:
        return network.apart(network.setup)
    except BaseException:
        state.taps = {}  # setup() undid what it made
        sd.write(state)
        raise


def _open_taps(nics: list[Any]) -> list[int]:
    """An fd on each NIC's tap, for QEMU."""
    if not nics:
        return []
    from runv.host import network

    fds: list[int] = []
    try:
        for nic in nics:
            fds.append(network.open_tap(nic.tap))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def leave_network(nics: list[Any]) -> None:
    if nics:
        from runv.host import network

        network.apart(lambda: network.teardown(nics))


