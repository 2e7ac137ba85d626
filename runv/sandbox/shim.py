"""The per-container shim: a long-lived process whose pid is the container's pid.

`runv create` forks it; it joins the container's namespaces and cgroup, boots
the sandbox (runv.sandbox.boot), reports on a sync pipe, then serves the
control socket until the VM is down and exits with the container's status.
"""
from __future__ import annotations

import os
import signal
from typing import Any, NoReturn

from runv import errors, faultpoint
from runv.agent import protocol as P
from runv.daemon import detach, null_stdio, report
from runv.errors import RunvError
from runv.guest_text import printable
from runv.host import proc
from runv.oci.config import Bundle, Validation
from runv.sandbox import namespaces
from runv.sandbox.relay import Relay
from runv.state import State, StateDir
from runv.status import Status


def main(sd: StateDir, state: State, bundle: Bundle, console_socket: str | None, sync_fd: int,
         validation: Validation | None = None) -> NoReturn:
    """The shim's life, in the forked child of `runv create`, which started `validation`."""
    code = 1
    try:
        detach(keep={sync_fd} | ({validation.fd} if validation else set()))
        state.pid = os.getpid()
        state.pid_start = proc.start_time(state.pid)
        host_netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        fresh_netns = namespaces.join_network_namespace(bundle.config, state)
        _join_cgroup(bundle.config, state)
        sd.write(state)  # so that a failed create can find the cgroup to remove
        faultpoint.reached("shim.cgroup")
        namespaces.join_host_namespaces(bundle.config)
        stdio = Relay.for_init(bundle.config, console_socket)
        if console_socket:
            null_stdio()  # the container's stdio is the pty
        from runv.sandbox.boot import boot, leave_network
        from runv.sandbox.control import Control

        sandbox = boot(sd, state, bundle, stdio, host_netns, fresh_netns, validation)
        os.close(host_netns)
        state.move(Status.CREATED)
        sd.write(state)
        faultpoint.reached("shim.created")
        Control(sandbox, sd.path)
        report(sync_fd, {"ok": True, "pid": state.pid})
        signal.signal(signal.SIGWINCH, lambda *_: sandbox.window_changed())
        try:
            code = sandbox.run()
        finally:
            leave_network(sandbox.nics)
            state.taps = {}
            try:
                sd.write(state)
            except OSError:
                pass  # deleted under us by `delete --force`
    except RunvError as e:
        report(sync_fd, errors.to_wire(e))
    except P.ProtocolError as e:
        report(sync_fd, errors.to_wire(errors.QemuError(
            f"the guest agent broke the protocol: {printable(str(e))}")))
    except OSError as e:
        report(sync_fd, errors.to_wire(RunvError(str(e))))
    except BaseException as e:  # noqa: BLE001 - a shim must never die with a traceback
        report(sync_fd, _explain(e, bundle.config))
    os._exit(code)


def _explain(e: BaseException, config: Any) -> dict[str, Any]:
    """An unexpected error before the schema check ran is most likely a malformed
    config: then the schema's message names the field, else it is a bug."""
    from runv.oci.config import validate

    try:
        validate(config)
    except RunvError as invalid:
        return errors.to_wire(invalid)
    except BaseException:  # noqa: BLE001
        pass
    return errors.to_wire(RunvError(f"internal error: {type(e).__name__}: {e}"))


def _join_cgroup(config: dict[str, Any], state: State) -> None:
    """Put the shim (and so QEMU, its child) in the container's host cgroup."""
    from runv.host import cgroups

    cg = cgroups.setup(config, state.id, os.getpid())
    state.cgroup = ":".join(cg.dirs)
    state.cgroup_made = cg.made


