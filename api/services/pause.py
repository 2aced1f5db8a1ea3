"""Pause and resume in place: the consumer's live workers keep their processes, partitions and group membership.

``ConsumerService`` (api/services/consumers.py) takes ``pause`` and ``resume`` from ``PauseControl``; both go
through its one control path (``_control``: the locked transaction, the audit row, the command), which asks
``refuse_if_stopped`` first and calls ``_announce_pause`` for every change that keeps the workers. The workers
never read the database: the pause key (``CommandPublisher.announce_pause``) is how they learn of it.
"""
from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import redis

from api.services.audit import Action
from api.services.errors import ServiceError, Unavailable
from schema.models import Consumer
from schema.states import CommandAction, DesiredState

if TYPE_CHECKING:
    from api.auth.principal import Actor
    from api.services.commands import CommandPublisher
    from api.services.consumers import ControlResult


class NotPausable(ServiceError):
    """A pause of a consumer that runs no workers, or a resume of one that is stopped (409)."""

    status_code = 409


# the actions that act on the live workers in place, with the 409 each is on a stopped consumer
NOT_PAUSABLE = {
    CommandAction.PAUSE: "consumer is stopped: there are no workers to pause (POST /consumers/{id}/start/ first; "
                         "a paused consumer keeps its workers and their group membership)",
    CommandAction.RESUME: "consumer is stopped, not paused: POST /consumers/{id}/start/ starts it",
}
PAUSE_ACTIONS = frozenset(NOT_PAUSABLE)


def refuse_if_stopped(action: CommandAction, desired_state: DesiredState) -> None:
    """A pause or a resume of a stopped consumer is a 409: it has no workers to tell."""
    if action in NOT_PAUSABLE and desired_state == DesiredState.STOPPED:
        raise NotPausable(NOT_PAUSABLE[action])


class PauseControl:
    """The pause and resume of ``ConsumerService``, which provides ``_control`` and ``publisher``."""

    publisher: CommandPublisher

    def pause(self, consumer_id: uuid.UUID, actor: Actor | None = None) -> ControlResult:
        """Running -> paused without a new generation: the workers keep their processes and partitions and stop
        fetching. Idempotent on a paused consumer; a 409 on a stopped one (there is nothing to pause)."""
        return self._control(consumer_id, CommandAction.PAUSE, Action.CONSUMER_PAUSE, actor)

    def resume(self, consumer_id: uuid.UUID, actor: Actor | None = None) -> ControlResult:
        """Paused -> running without a new generation. Idempotent on a running consumer; a 409 on a stopped
        one (``start`` starts it)."""
        return self._control(consumer_id, CommandAction.RESUME, Action.CONSUMER_RESUME, actor)

    def _announce_pause(self, consumer: Consumer) -> None:
        """Tell the live workers, inside the locked transaction: concurrent calls reach Redis in commit order,
        and a Redis that cannot be told refuses the call (rolled back) instead of leaving workers unaware."""
        try:
            self.publisher.announce_pause(consumer.id, consumer.generation,
                                          consumer.desired_state == DesiredState.PAUSED)
        except redis.RedisError as exc:
            raise Unavailable(f"Redis is unreachable ({type(exc).__name__}): the consumer's live workers cannot be "
                              "told, so nothing changed; try again when Redis is back") from exc
