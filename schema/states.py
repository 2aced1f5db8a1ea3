"""Process states of a consumer replica, the seed's consumer status, and the allowed transitions.

Standard library only, modelled on supervisord's ``states.py``: tiny, importable from anywhere.
"""
from __future__ import annotations

import enum


class ProcessState(enum.StrEnum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"
    WAITING = "WAITING"  # wants to run, but a dependency the start needs (Redis) is down: no failed start
    UNKNOWN = "UNKNOWN"  # nothing has reported for this replica yet
    PAUSED = "PAUSED"  # status only (api/services/status.py): RUNNING, holding its partitions, fetching nothing


class ConsumerStatus(enum.StrEnum):
    """The seed's coarse status, kept in the ``consumers.status`` column."""

    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    ERROR = "ERROR"


class DesiredState(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"  # workers run and keep their partitions, and fetch nothing (POST /consumers/{id}/pause/)


class CommandAction(enum.StrEnum):
    """What the API tells the supervisor happened; the supervisor reconciles either way."""

    CREATE = "create"
    UPDATE = "update"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    DELETE = "delete"
    PAUSE = "pause"
    RESUME = "resume"


# the replica states that make a consumer's status ERROR
ERROR_STATES = frozenset({ProcessState.BACKOFF, ProcessState.FATAL, ProcessState.EXITED, ProcessState.WAITING})

# from-state -> the states it may move to; anything else is a bug and raises IllegalTransition
TRANSITIONS: dict[ProcessState, frozenset[ProcessState]] = {
    ProcessState.UNKNOWN: frozenset({ProcessState.STOPPED, ProcessState.STARTING}),
    ProcessState.STOPPED: frozenset({ProcessState.STARTING, ProcessState.WAITING}),
    ProcessState.STARTING: frozenset(
        {ProcessState.RUNNING, ProcessState.BACKOFF, ProcessState.STOPPING, ProcessState.FATAL}
    ),
    ProcessState.RUNNING: frozenset({ProcessState.STOPPING, ProcessState.EXITED, ProcessState.FATAL}),
    ProcessState.BACKOFF: frozenset(
        {ProcessState.STARTING, ProcessState.FATAL, ProcessState.STOPPED, ProcessState.WAITING}
    ),
    ProcessState.STOPPING: frozenset({ProcessState.STOPPED}),
    ProcessState.EXITED: frozenset({ProcessState.STARTING, ProcessState.STOPPED, ProcessState.WAITING}),
    ProcessState.FATAL: frozenset({ProcessState.STARTING, ProcessState.STOPPED}),
    ProcessState.WAITING: frozenset({ProcessState.STARTING, ProcessState.STOPPED}),
}


class IllegalTransition(RuntimeError):
    """A replica was asked to move between two states the table does not connect."""


def check_transition(current: ProcessState, new: ProcessState) -> None:
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"illegal transition {current.value} -> {new.value}")


def consumer_status(states: list[ProcessState]) -> ConsumerStatus:
    """Fold the replica states into the seed's status: any error wins, all running is ACTIVE."""
    if any(s in ERROR_STATES for s in states):
        return ConsumerStatus.ERROR
    if states and all(s == ProcessState.RUNNING for s in states):
        return ConsumerStatus.ACTIVE
    return ConsumerStatus.INACTIVE

