"""`create` and `run`: validate the bundle, make the state dir, fork the shim and
wait until it reports the container created (or why not)."""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from runv import errors, faultpoint, log
from runv.files import write_atomic
from runv.foreground import forward_signals, raw_tty
from runv.state import State, StateDir

if TYPE_CHECKING:
    from runv.oci.config import Bundle, Validation


def create(root: str, container_id: str, bundle_dir: str, pid_file: str | None,
           console_socket: str | None, foreground: bool = False) -> int:
    """Create the container; return the shim's pid (the container's pid)."""
    from runv.host import hooks
    from runv.oci import config

    log.debug("create")
    sd = StateDir(root, container_id)
    bundle = config.load(bundle_dir, schema=False)  # the shim validates it, in parallel with the boot
    config.explained(bundle.config, hooks.validate, bundle.config.get("hooks"))
    terminal = bool(bundle.config["process"].get("terminal"))
    if terminal and not console_socket and not foreground:
        raise errors.InvalidArgument(
            "cannot allocate tty if runv will detach without setting console socket")
    if console_socket and not terminal:
        raise errors.InvalidArgument("--console-socket given but process.terminal is false")
    annotations = bundle.config.get("annotations") or {}
    if not (isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())):
        config.validate(bundle.config)  # names the problem
        raise errors.SpecError("config.json: annotations must map strings to strings")
    from runv.member import find_pod

    pod = find_pod(root, bundle.config)
    # The shim waits for the verdict; started here, jsonschema's import overlaps its start-up.
    # A pod's next container is validated by the pod's shim.
    validation = None if pod else config.validating(bundle.config)
    try:
        sd.create()
        try:
            state = State(id=container_id, bundle=bundle.path, rootfs=bundle.rootfs,
                          created=log.now(), annotations=annotations,
                          hooks=bundle.config.get("hooks") or {}, sandbox=pod)
            sd.write(state)
            pid = _fork_shim(sd, state, bundle, console_socket, validation)
            if pid_file:
                write_atomic(pid_file, str(pid))
        except BaseException:
            _cleanup(sd)
            raise
    finally:
        if validation is not None:
            _stop(validation)
    sd.unlock()
    return pid


def _stop(validation: Validation) -> None:
    """The shim has its verdict, or never will: the validating child goes."""
    import signal

    try:
        os.close(validation.fd)
    except OSError:
        pass
    try:
        os.kill(validation.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    validation.reap()


def _fork_shim(sd: StateDir, state: State, bundle: Bundle, console_socket: str | None,
               validation: Validation | None) -> int:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        if state.sandbox:  # one of a pod's next containers: in the pod's VM
            from runv.member import light_shim

            light_shim(sd, state, bundle, console_socket, w)  # never returns
        from runv.sandbox.shim import main

        main(sd, state, bundle, console_socket, w, validation)  # never returns
    os.close(w)
    faultpoint.reached("create.forked")
    with os.fdopen(r, "rb") as f:
        line = f.readline()
    try:
        reply = json.loads(line) if line else {"error": "the shim died while starting"}
    except ValueError:
        reply = {"error": "the shim sent garbage while starting"}
    if "error" in reply:
        os.waitpid(pid, 0)
        raise errors.from_wire(reply)
    return pid


def _cleanup(sd: StateDir) -> None:
    """Undo a failed create: whatever the shim left, then the state dir."""
    from runv.container import Container

    try:
        c = Container(sd, sd.read())
        c.destroy()
        c.remove_cgroup()
    except errors.RunvError:
        pass
    sd.remove()


def run_container(root: str, container_id: str, bundle_dir: str, pid_file: str | None,
                  console_socket: str | None, detach: bool, keep: bool) -> int:
    from runv.container import Container

    pid = create(root, container_id, bundle_dir, pid_file, console_socket, foreground=not detach)
    c = Container.load(root, container_id, lock=True)
    try:
        c.start()
    except errors.RunvError:
        c.delete(force=True)
        raise
    c.dir.unlock()
    if detach:
        return 0
    with raw_tty(_wants_raw_tty(root, container_id, console_socket)):
        code = _wait_forwarding_signals(root, container_id, pid)
    if not keep:
        try:
            Container.load(root, container_id, lock=True).delete(force=True)
        except errors.NotFound:
            pass
    return code


def _wait_forwarding_signals(root: str, container_id: str, pid: int) -> int:
    from runv.container import Container

    def send(signo: int) -> None:
        try:
            Container.load(root, container_id).kill(signo)
        except errors.RunvError:
            pass

    forward_signals(send)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _wants_raw_tty(root: str, container_id: str, console_socket: str | None) -> bool:
    """`run` on a terminal with process.terminal: our tty goes raw, the guest's pty cooks."""
    if console_socket or not os.isatty(0):
        return False
    from runv.container import Container

    try:
        with open(os.path.join(Container.load(root, container_id).state.bundle, "config.json")) as f:
            return bool(json.load(f).get("process", {}).get("terminal"))
    except (OSError, ValueError, AttributeError, errors.RunvError):
        return False
