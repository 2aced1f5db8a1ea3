"""A consumer's dead letters: list, read, replay, delete, and the purge when the consumer is deleted.

The dead letters live in rq (``schema.dead_letter_store``); the consumer and its pipeline in the database. A
replay is refused (409) when the dead letter's processor is no longer in the consumer's pipeline: the rq job
delivers with the processor's current configuration, and a deleted processor has none.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TypeVar

import redis

from api.services.consumers import ConsumerService
from api.services.errors import NotFound, ServiceError, Unavailable
from schema.dead_letter_store import DeadLetter, DeadLetterStore
from schema.models import Consumer

log = logging.getLogger("kcm.api")

T = TypeVar("T")

REPLAY_REQUESTED_BY = "requested through the API"


class ReplayRefused(ServiceError):
    """The dead letter exists but cannot be delivered again (its processor is gone)."""

    status_code = 409


def _redis(fn: Callable[..., T], *args) -> T:
    try:
        return fn(*args)
    except redis.RedisError as exc:
        raise Unavailable("Redis, which holds the dead letters, is unavailable; try again shortly.") from exc


def refusal(letter: DeadLetter, consumer: Consumer) -> str | None:
    """Why ``letter`` cannot be replayed on ``consumer`` as it is now, or None when it can."""
    if letter.processor_id in {str(p.id) for p in consumer.downstream_processors}:
        return None
    kind = letter.context.get("processor_type", "unknown type")
    return (f"its processor {letter.processor_id} ({kind}) is no longer in consumer {consumer.id}'s pipeline, "
            "so there is no configuration to deliver it with; delete the dead letter to give it up")


class DeadLetterService:
    def __init__(self, consumers: ConsumerService, store: DeadLetterStore):
        self.consumers = consumers
        self.store = store

    def page(self, consumer_id: uuid.UUID, first_item: int, page_size: int) -> tuple[list[dict], int]:
        """Newest first, with the total for the pagination header."""
        self.consumers.get(consumer_id)  # a missing consumer is the 404 to report first
        letters, total = _redis(self.store.page, consumer_id, first_item, page_size)
        return [letter.as_dict() for letter in letters], total

    def get(self, consumer_id: uuid.UUID, dl_id: str) -> dict:
        self.consumers.get(consumer_id)
        return self._found(_redis(self.store.get, consumer_id, dl_id), consumer_id, dl_id).as_dict()

    def replay(self, consumer_id: uuid.UUID, dl_id: str) -> dict:
        consumer = self.consumers.get(consumer_id)
        letter = self._found(_redis(self.store.get, consumer_id, dl_id), consumer_id, dl_id)
        reason = refusal(letter, consumer)
        if reason is not None:
            raise ReplayRefused(f"dead letter {dl_id} cannot be replayed: {reason}")
        replayed = _redis(self.store.replay, consumer_id, dl_id, REPLAY_REQUESTED_BY)
        return self._found(replayed, consumer_id, dl_id).as_dict()  # it may have been delivered meanwhile

    def replay_all(self, consumer_id: uuid.UUID) -> dict:
        """Every replayable dead letter is queued again; the others are reported with the reason."""
        consumer = self.consumers.get(consumer_id)
        replayed, refused = 0, []
        for letter in _redis(self.store.all, consumer_id):
            reason = refusal(letter, consumer)
            if reason is not None:
                refused.append({"id": letter.id, "reason": reason})
            elif _redis(self.store.replay, consumer_id, letter.id, REPLAY_REQUESTED_BY) is not None:
                replayed += 1
        return {"replayed": replayed, "refused": refused}

    def delete(self, consumer_id: uuid.UUID, dl_id: str) -> None:
        self.consumers.get(consumer_id)
        if not _redis(self.store.delete, consumer_id, dl_id):
            raise NotFound(f"dead letter {dl_id} not found on consumer {consumer_id}")

    def purge_for_deleted_consumer(self, consumer_id: uuid.UUID) -> None:
        """Best effort, after the delete committed: a Redis that is down leaves the dead letters in rq (logged);
        the supervisor purges again once the consumer's last worker is gone."""
        self.store.purge_logged(consumer_id, log, reason="consumer-deleted")

    def close(self) -> None:
        self.store.close()

    @staticmethod
    def _found(letter: DeadLetter | None, consumer_id: uuid.UUID, dl_id: str) -> DeadLetter:
        if letter is None:
            raise NotFound(f"dead letter {dl_id} not found on consumer {consumer_id}")
        return letter
