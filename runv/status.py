"""Container status and the moves allowed between them (OCI runtime spec)."""
from __future__ import annotations

import enum

from runv.errors import InvalidState


class Status(str, enum.Enum):
    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"

    def can_start(self) -> bool:
        return self is Status.CREATED

    def can_kill(self) -> bool:
        return self in (Status.CREATED, Status.RUNNING, Status.PAUSED)

    def can_delete(self) -> bool:
        return self is Status.STOPPED

    def can_pause(self) -> bool:
        return self is Status.RUNNING

    def can_resume(self) -> bool:
        return self is Status.PAUSED


def require(ok: bool, container_id: str, action: str, status: Status) -> None:
    """Raise runc's style of error when `action` is not allowed in `status`."""
    if not ok:
        raise InvalidState(f"cannot {action} container {container_id} in {status.value} state")
