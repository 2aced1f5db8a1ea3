"""What the dead-letter endpoints return: a dead letter with its error context and history, a replay-all tally."""
from __future__ import annotations

from datetime import UTC, datetime

from marshmallow import Schema, fields


class HistoryEntryOut(Schema):
    at = fields.String(required=True, metadata={"description": "ISO-8601 UTC time of the event"})
    event = fields.String(required=True, metadata={
        "description": "dead_lettered, replay_requested, delivery_failed, delivered, ..."})
    detail = fields.String(required=True)


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
    history = fields.List(fields.Nested(HistoryEntryOut), required=True, metadata={
        "description": "what happened to it, oldest first (dead-lettered, replays requested, deliveries)"})

    def _indexed_at(self, letter: dict) -> str:
        return datetime.fromtimestamp(letter["indexed_at"], UTC).isoformat()


class RefusedReplayOut(Schema):
    id = fields.String(required=True, metadata={"description": "dead letter id"})
    reason = fields.String(required=True, metadata={"description": "why it was not replayed"})


class ReplayAllOut(Schema):
    replayed = fields.Integer(required=True, metadata={"description": "dead letters put back on the queue"})
    refused = fields.List(fields.Nested(RefusedReplayOut), required=True, metadata={
        "description": "dead letters left as they are: their processor is no longer in the pipeline"})
