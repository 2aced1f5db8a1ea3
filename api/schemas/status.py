"""Schema of GET /consumers/{id}/status/: the desired state from the database, the live state from Redis."""
from __future__ import annotations

from marshmallow import Schema, fields

from api.schemas.monitoring import HealthOut, LagOut, ThroughputOut
from schema.states import ConsumerStatus, DesiredState, ProcessState


class ProcessorStatsOut(Schema):
    processor_id = fields.String(required=True)
    processor_type = fields.String(required=True)
    batches = fields.Integer(required=True, metadata={"description": "Batches the processor accepted"})
    retries = fields.Integer(required=True, metadata={"description": "Retries of a failing batch"})
    dead_lettered = fields.Integer(required=True, metadata={"description": "Messages dead-lettered"})
    skipped = fields.Integer(required=True, metadata={"description": "Messages skipped (on_error=skip)"})
    dropped = fields.Integer(required=True, metadata={
        "description": "Messages a step let not through (a filter's non-matches; 0 for a sink)"})
    batch_latency_p50_seconds = fields.Float(allow_none=True, metadata={
        "description": "Median seconds per accepted batch (process + flush), estimated from the latency buckets; "
                       "null before the first batch or with KCM_WORKER_METRICS=false"})
    batch_latency_p99_seconds = fields.Float(allow_none=True, metadata={"description": "99th percentile, likewise"})


class ReplicaStatusOut(Schema):
    replica = fields.Integer(required=True)
    state = fields.Enum(ProcessState, by_value=True, required=True, metadata={
        "description": "What is true now: RUNNING only when the current process heartbeats and holds partitions "
                       "(or has none to hold); UNKNOWN when the supervisor is gone or the process is silent"})
    reported_state = fields.Enum(ProcessState, by_value=True, metadata={
        "description": "The state the supervisor last wrote"})
    stale = fields.Boolean(metadata={"description": "The supervisor of this replica is not heartbeating"})
    degraded = fields.String(allow_none=True, metadata={
        "description": "retrying (a failing batch) or recovering (exited abnormally, not yet stable)"})
    reason = fields.String(allow_none=True, metadata={
        "description": "Why state is what it is, when not plain (e.g. no live supervisor carries the labels of the "
                       "consumer's placement, so nobody may run the replica)"})
    alive = fields.Boolean(required=True, metadata={
        "description": "The current process (pid and generation of the state) heartbeats"})
    pid = fields.Integer(allow_none=True)
    host = fields.String(allow_none=True)
    supervisor_id = fields.String(allow_none=True, metadata={"description": "The supervisor holding the slot"})
    epoch = fields.Integer(allow_none=True, metadata={"description": "Its slot lease's fencing token"})
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
    processors = fields.List(fields.Nested(ProcessorStatsOut), allow_none=True, metadata={
        "description": "Per processor, what the replica's current worker counted since it started; null when none"})


class ConsumerStatusOut(Schema):
    id = fields.UUID(required=True)
    status = fields.Enum(ConsumerStatus, by_value=True, required=True, metadata={
        "description": "The supervisor's status folded with what is live: ACTIVE only if a replica really runs"})
    status_reason = fields.String(allow_none=True, metadata={"description": "Why status differs from the stored one"})
    state = fields.Enum(ProcessState, by_value=True, required=True)
    desired_state = fields.Enum(DesiredState, by_value=True, required=True)
    generation = fields.Integer(required=True)
    replicas = fields.List(fields.Nested(ReplicaStatusOut), required=True)
    lag = fields.Nested(LagOut, allow_none=True, metadata={"description": "From the lag monitor; null when none"})
    health = fields.Nested(HealthOut, required=True)
    throughput = fields.Nested(ThroughputOut, allow_none=True, metadata={"description": "Null: none yet"})
