"""Schemas of the monitoring reads: a consumer's lag, health and throughput (in its status), the live supervisors, /readyz."""
from __future__ import annotations

from marshmallow import Schema, fields

from schema.health import VERDICTS

VERDICT_NAMES = [v.value for v in VERDICTS]


class PartitionLagOut(Schema):
    partition = fields.Integer(required=True)
    committed = fields.Integer(allow_none=True, metadata={"description": "The group's committed offset; null: none"})
    high_watermark = fields.Integer(required=True)
    lag_messages = fields.Integer(required=True, metadata={
        "description": "high_watermark - the first unconsumed offset that still exists"})
    lag_seconds = fields.Float(allow_none=True, metadata={
        "description": "Age of the oldest unconsumed message (now - its timestamp); 0 when caught up, null if "
                       "unreadable"})
    verdict = fields.String(allow_none=True, metadata={"description": "The partition's health verdict",
                                                       "enum": VERDICT_NAMES})


class LagOut(Schema):
    sampled_at = fields.String(allow_none=True, metadata={"description": "ISO-8601 UTC, when Kafka was read"})
    total_messages = fields.Integer(required=True)
    max_seconds = fields.Float(allow_none=True, metadata={"description": "The largest lag_seconds"})
    partitions = fields.List(fields.Nested(PartitionLagOut), required=True)


class ThroughputOut(Schema):
    sampled_at = fields.String(allow_none=True, metadata={"description": "ISO-8601 UTC, when the counters were read"})
    messages_per_second = fields.Float(required=True, metadata={
        "description": "Messages the consumer's workers delivered per second over the last minute"})
    bytes_per_second = fields.Float(required=True, metadata={"description": "Payload bytes per second, likewise"})
    window_seconds = fields.Float(required=True, metadata={
        "description": "The span the rates are measured over (60 s, shorter just after the lag monitor started)"})


class HealthOut(Schema):
    verdict = fields.String(required=True, metadata={"enum": VERDICT_NAMES, "description": "docs/monitoring.md"})
    reason = fields.String(required=True, metadata={"description": "The rule that fired, in words"})
    since = fields.String(allow_none=True, metadata={"description": "ISO-8601 UTC, when this verdict began"})


class SupervisorOut(Schema):
    id = fields.String(required=True)
    host = fields.String(allow_none=True)
    pid = fields.Integer(allow_none=True)
    started_at = fields.String(allow_none=True, metadata={"description": "ISO-8601 UTC"})
    last_heartbeat = fields.String(allow_none=True, metadata={"description": "ISO-8601 UTC"})
    replicas = fields.Integer(allow_none=True, metadata={"description": "Replicas the supervisor holds"})


class CheckOut(Schema):
    ok = fields.Boolean(required=True)
    detail = fields.String(required=True)


class ReadyOut(Schema):
    status = fields.String(required=True, metadata={"enum": ["ready"]})
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckOut), required=True)


class AliveOut(Schema):
    status = fields.String(required=True, metadata={"enum": ["alive"]})
