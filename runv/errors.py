"""The one error hierarchy of runv. Only runv.cli prints these."""
from __future__ import annotations


class RunvError(Exception):
    """An error to show the user as one line: `runv: <message>`."""

    exit_code = 1


class NotFound(RunvError):
    pass


class Exists(RunvError):
    pass


class CorruptState(RunvError):
    """A container's state.json is there but unreadable or not runv's: `delete
    --force` still cleans up after it."""


class InvalidState(RunvError):
    pass


class InvalidTransition(InvalidState):
    """A status change that runv.status.TRANSITIONS does not allow."""

    def __init__(self, container_id: str, old: str, new: str) -> None:
        super().__init__(f"container {container_id} cannot go from {old} to {new}")
        self.old, self.new = old, new


class InvalidArgument(RunvError):
    pass


class SpecError(RunvError):
    """config.json is missing, unreadable or does not follow the OCI spec."""


class QemuError(RunvError):
    """QEMU failed to start, or died."""


class AgentError(RunvError):
    """The guest agent refused a request; carries the guest's errno."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno
