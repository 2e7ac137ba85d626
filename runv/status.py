"""Container status and the moves allowed between them (OCI runtime spec).

TRANSITIONS is the whole machine: a move it does not hold raises
InvalidTransition naming both states. Code that changes a container's status
goes through State.move (runv.state), which checks it here.
"""
from __future__ import annotations

import enum

from runv.errors import InvalidState, InvalidTransition


class Status(str, enum.Enum):  # noqa: UP042 - str mixin: the value is what state.json holds
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

    def can_move(self, to: Status) -> bool:
        return to in TRANSITIONS[self]


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.CREATING: frozenset({Status.CREATED, Status.STOPPED}),
    Status.CREATED: frozenset({Status.RUNNING, Status.STOPPED}),
    Status.RUNNING: frozenset({Status.PAUSED, Status.STOPPED}),
    Status.PAUSED: frozenset({Status.RUNNING, Status.STOPPED}),
    Status.STOPPED: frozenset(),
}


def transition(container_id: str, old: Status, new: Status) -> Status:
    """`new`, if a container may move there from `old`; else InvalidTransition."""
    if not old.can_move(new):
        raise InvalidTransition(container_id, old.value, new.value)
    return new


def require(ok: bool, container_id: str, action: str, status: Status) -> None:
    """Raise runc's style of error when `action` is not allowed in `status`."""
    if not ok:
        raise InvalidState(f"cannot {action} container {container_id} in {status.value} state")
