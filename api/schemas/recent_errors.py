"""Schema of GET /consumers/{id}/errors/: the consumer's last errors, newest first."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from schema.worker_metrics import ERROR_KINDS


class RecentErrorOut(Schema):
    time = fields.String(required=True, metadata={"description": "ISO-8601 UTC"})
    replica = fields.Integer(allow_none=True)
    processor = fields.String(allow_none=True, metadata={
        "description": "The processor's id; null for a Kafka error or the worker's exit"})
    kind = fields.String(required=True, validate=validate.OneOf(ERROR_KINDS), metadata={
        "description": "retry (an attempt failed, the batch is retried), batch_failed (a processor gave up on a "
                       "batch or isolates its failing messages), dead_lettered, skipped (one message), kafka (a "
                       "Kafka or commit error), exit (the worker exited abnormally)"})
    message = fields.String(required=True, metadata={
        "description": "What went wrong, scrubbed of secrets like last_error; never a payload"})
