"""The state directory: <root>/<id>/ holding state.json, the shim's socket and logs.

state.json is written atomically (temp file + rename). An exclusive flock on the
container's directory serialises operations on one container.
"""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from runv.errors import CorruptState, Exists, InvalidArgument, NotFound
from runv.files import write_atomic
from runv.ocistate import well_formed
from runv.status import Status, transition

DEFAULT_ROOT = "/run/runv"
MAX_ID_LEN = 255  # the id names a directory (state, cgroup): NAME_MAX
_ID_PUNCTUATION = set("_+-.")


def check_root(root: str) -> None:
    if not os.path.isabs(root) or "\0" in root:
        raise InvalidArgument(f"--root must be an absolute path: {root!r}")


def check_id(container_id: str) -> None:
    if not container_id:
        raise InvalidArgument("container id cannot be empty")
    if len(container_id) > MAX_ID_LEN:
        raise InvalidArgument(f"invalid container id: longer than {MAX_ID_LEN} characters")
    if container_id in (".", "..") or not all(
            c.isascii() and c.isalnum() or c in _ID_PUNCTUATION for c in container_id):
        raise InvalidArgument(f"invalid container id format: {container_id}")


@dataclass
class State:
    id: str
    bundle: str
    status: str = "creating"
    pid: int = 0
    pid_start: int | None = None
    qemu_pid: int = 0
    rootfs: str = ""
    created: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    accel: str = ""
    netns: str = ""
    hooks: dict[str, Any] = field(default_factory=dict)
    cgroup: str = ""  # the cgroups the shim joined, ":"-separated
    cgroup_made: list[str] | None = None  # the cgroup dirs runv made, to remove (None: old state)
    # What tearing the sandbox down needs when its shim is gone (runv.sandbox.teardown):
    qemu_start: int | None = None  # QEMU's start time, so that a reused pid is not killed
    netns_path: str = ""  # the network namespace joined by path ("": one the shim made, gone with it)
    taps: dict[str, str] = field(default_factory=dict)  # tap -> the interface it stands for, until left
    # linux.resources as applied now (create's, then each `runv update`'s); the most memory the
    # guest has been given (its RAM less the balloon), and its RAM (runv.oci.resources)
    resources: dict[str, Any] = field(default_factory=dict)
    guest_memory_mb: int = 0
    guest_ram_mb: int = 0
    shared_ram: bool = False  # restored on a shared template's RAM: the balloon never inflates (runv.qemu.sharedram)
    # A pod: `pod`, its VM can take the pod's next containers (runv.qemu.podshare);
    # `sandbox`, the id of the container in whose VM this one runs ("": its own VM)
    pod: bool = False
    sandbox: str = ""

    def move(self, to: Status, exit_code: int | None = None) -> None:
        """Change the status, if TRANSITIONS allows it (else InvalidTransition)."""
        self.status = transition(self.id, Status(self.status), to).value
        if to is Status.STOPPED:
            self.exit_code = exit_code


def _reason(e: Exception) -> str:
    if isinstance(e, OSError):
        return (e.strerror or str(e)).lower()
    return "not JSON" if isinstance(e, ValueError) else str(e)


class StateDir:
    """One container's directory under the root."""

    def __init__(self, root: str, container_id: str) -> None:
        check_id(container_id)
        self.root = root
        self.id = container_id
        self.path = os.path.join(root, container_id)
        self._lock_fd: int | None = None

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def state_file(self) -> str:
        return self.file("state.json")

    def create(self) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            os.mkdir(self.path, 0o700)
        except FileExistsError:
            raise Exists(f"container with id exists: {self.id}") from None
        self.lock()

    def lock(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"container does not exist: {self.id}") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def read(self) -> State:
        try:
            with open(self.state_file) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise NotFound(f"container does not exist: {self.id}") from None
        except (OSError, ValueError) as e:
            raise CorruptState(f"container state of {self.id} is unreadable: {_reason(e)}") from None
        if not well_formed(data, self.id):
            raise CorruptState(f"container state of {self.id} is corrupt")
        known = State.__dataclass_fields__
        return State(**{k: v for k, v in data.items() if k in known})

    def write(self, state: State) -> None:
        write_atomic(self.state_file, json.dumps(asdict(state)))

    def remove(self) -> None:
        import shutil

        # No mount is ever made in it outside QEMU's own namespace (runv.qemu.jail):
        # <state dir>/jail is an empty directory everywhere else.
        shutil.rmtree(self.path, ignore_errors=True)
        self.unlock()


def list_ids(root: str) -> list[str]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.exists(os.path.join(root, n, "state.json")))
