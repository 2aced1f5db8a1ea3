"""/consumers/{id}/dead-letters/: list (paginated, with error context), replay one or all, delete one.

A dead letter is an rq job on the ``kcm-dead-letters`` queue (see processors/dead_letters.py); replaying
puts it back on that queue, where the ``rq worker`` process delivers it to its processor again.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime

import redis
from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.context import services
from api.schemas.common import ErrorSchema
from api.services.errors import NotFound, Unavailable
from processors.dead_letter_store import DeadLetterStore

blp = Blueprint("dead_letters", __name__, url_prefix="/consumers", description="Dead letters (rq)")

STORE_EXTENSION = "kcm.dead_letters"
NOT_FOUND = "No consumer, or no dead letter of this consumer, with this id"


log = logging.getLogger(__name__)


class DeadLetterOut(Schema):
    id = fields.String(required=True, metadata={"description": "dead letter id (the rq job id)"})
    status = fields.String(required=True, metadata={
        "description": "rq job status: queued/scheduled (retrying), started, failed (retries exhausted)"})
    consumer_id = fields.String(required=True)
    processor_id = fields.String(required=True)
    processor_type = fields.String(required=True)
    topic = fields.String(required=True)
    partition = fields.Integer(required=True)
    offset = fields.Integer(required=True)
    error_class = fields.String(required=True, metadata={"description": "exception class of the first failure"})
    error_message = fields.String(required=True)
    attempts = fields.Integer(required=True, metadata={"description": "delivery attempts before dead-lettering"})
    failed_at = fields.String(required=True, metadata={"description": "ISO-8601 UTC time it was dead-lettered"})
    payload_bytes = fields.Integer(required=True)
    indexed_at = fields.Method("_indexed_at", required=True)

    def _indexed_at(self, letter: dict) -> str:
        return datetime.fromtimestamp(letter["indexed_at"], UTC).isoformat()


class ReplayAllOut(Schema):
    replayed = fields.Integer(required=True, metadata={"description": "dead letters put back on the queue"})


def _store() -> DeadLetterStore:
    store = current_app.extensions.get(STORE_EXTENSION)
    if store is None:
        # rq stores pickled bytes: it needs its own client, without the API client's decode_responses
        client = redis.Redis.from_url(services().settings.redis_url, socket_connect_timeout=1.0,
                                      socket_timeout=2.0)
        store = current_app.extensions[STORE_EXTENSION] = DeadLetterStore(client)
    return store


def purge_for_deleted_consumer(consumer_id) -> None:
    """Best effort, after the delete committed: a Redis that is down leaves the dead letters in rq (logged)."""
    _store().purge_logged(consumer_id, log, reason="consumer-deleted")


def _checked(consumer_id) -> DeadLetterStore:
    services().consumers.get(consumer_id)  # a missing consumer is the 404 to report first
    return _store()


def _redis_call(fn, *args):
    try:
        return fn(*args)
    except redis.RedisError as exc:
        raise Unavailable("Redis, which holds the dead letters, is unavailable; try again shortly.") from exc


def _found(letter, consumer_id, dl_id):
    if letter is None:
        raise NotFound(f"dead letter {dl_id} not found on consumer {consumer_id}")
    return letter.as_dict()


@blp.route("/<uuid:consumer_id>/dead-letters/")
class DeadLetterCollection(MethodView):
    @blp.response(200, DeadLetterOut(many=True))
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis unavailable")
    @blp.paginate()
    def get(self, consumer_id, pagination_parameters):
        """List the consumer's dead letters, newest first, with their error context (X-Pagination header)"""
        store = _checked(consumer_id)
        items, total = _redis_call(store.page, consumer_id, pagination_parameters.first_item,
                                   pagination_parameters.page_size)
        pagination_parameters.item_count = total
        return [letter.as_dict() for letter in items]


@blp.route("/<uuid:consumer_id>/dead-letters/replay/")
class DeadLetterReplayAll(MethodView):
    @blp.response(202, ReplayAllOut)
    @blp.alt_response(404, schema=ErrorSchema, description="No consumer with this id")
    @blp.alt_response(503, schema=ErrorSchema, description="Redis unavailable")
    def post(self, consumer_id):
        """Replay every dead letter of the consumer (each is queued for delivery again)"""
        return {"replayed": _redis_call(_checked(consumer_id).replay_all, consumer_id)}


@blp.route("/<uuid:consumer_id>/dead-letters/<string:dl_id>/")
class DeadLetterItem(MethodView):
    @blp.response(200, DeadLetterOut)
    @blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
    @blp.alt_response(503, schema=ErrorSchema, description="Redis unavailable")
    def get(self, consumer_id, dl_id):
        """Read one dead letter"""
        return _found(_redis_call(_checked(consumer_id).get, consumer_id, dl_id), consumer_id, dl_id)

    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
    @blp.alt_response(503, schema=ErrorSchema, description="Redis unavailable")
    def delete(self, consumer_id, dl_id):
        """Delete a dead letter (its message is given up: this is the one lossy action)"""
        if not _redis_call(_checked(consumer_id).delete, consumer_id, dl_id):
            raise NotFound(f"dead letter {dl_id} not found on consumer {consumer_id}")


@blp.route("/<uuid:consumer_id>/dead-letters/<string:dl_id>/replay/")
class DeadLetterReplay(MethodView):
    @blp.response(202, DeadLetterOut)
    @blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
    @blp.alt_response(503, schema=ErrorSchema, description="Redis unavailable")
    def post(self, consumer_id, dl_id):
        """Replay one dead letter now (a failed one is requeued; a scheduled retry runs at once)"""
        return _found(_redis_call(_checked(consumer_id).replay, consumer_id, dl_id), consumer_id, dl_id)
