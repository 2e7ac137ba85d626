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


# --- over the wire: the shim's control socket and its sync pipe ----------------

_KINDS: dict[str, type[RunvError]] = {c.__name__: c for c in (
    RunvError, NotFound, Exists, CorruptState, InvalidState, InvalidArgument, SpecError, QemuError)}


def to_wire(e: RunvError) -> dict[str, object]:
    """An error as the shim sends it: its message, its kind, and the guest's errno if any."""
    reply: dict[str, object] = {"error": str(e), "kind": type(e).__name__}
    if isinstance(e, AgentError) and e.errno:
        reply["errno"] = e.errno
    return reply


def from_wire(reply: dict[str, object]) -> RunvError:
    """The one decoder of a shim's error reply: an unknown kind is a plain RunvError,
    an InvalidTransition an InvalidState, an agent's error an AgentError with its errno."""
    message, kind = str(reply.get("error", "failed")), reply.get("kind")
    if kind == AgentError.__name__:
        errno = reply.get("errno", 0)
        return AgentError(message, errno if isinstance(errno, int) else 0)
    if kind == InvalidTransition.__name__:
        return InvalidState(message)
    return _KINDS.get(kind if isinstance(kind, str) else "", RunvError)(message)
