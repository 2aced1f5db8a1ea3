"""Schema of GET /consumers/{id}/status/: the desired state from the database, the live state from Redis."""
from __future__ import annotations

from marshmallow import Schema, fields

from schema.states import ConsumerStatus, DesiredState, ProcessState


class ReplicaStatusOut(Schema):
    replica = fields.Integer(required=True)
    state = fields.Enum(ProcessState, by_value=True, required=True)
    alive = fields.Boolean(required=True, metadata={"description": "A worker heartbeat is present"})
    pid = fields.Integer(allow_none=True)
    host = fields.String(allow_none=True)
    supervisor_id = fields.String(allow_none=True)
    generation = fields.Integer(allow_none=True, metadata={"description": "Generation the process runs"})
    started_at = fields.String(allow_none=True, metadata={"description": "ISO-8601 UTC"})
    last_heartbeat = fields.String(allow_none=True, metadata={"description": "ISO-8601 UTC"})
    updated_at = fields.String(allow_none=True, metadata={"description": "ISO-8601 UTC, last state change"})
    restarts = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    partitions = fields.List(fields.String(), allow_none=True, metadata={"description": "'topic:partition'"})
    messages = fields.Integer(allow_none=True)
    bytes = fields.Integer(allow_none=True)
    errors = fields.Integer(allow_none=True)


class ConsumerStatusOut(Schema):
    id = fields.UUID(required=True)
    status = fields.Enum(ConsumerStatus, by_value=True, required=True)
    state = fields.Enum(ProcessState, by_value=True, required=True)
    desired_state = fields.Enum(DesiredState, by_value=True, required=True)
    generation = fields.Integer(required=True)
    replicas = fields.List(fields.Nested(ReplicaStatusOut), required=True)
