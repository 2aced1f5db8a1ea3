"""The live status of a consumer: replica hashes the supervisor and the workers write, read in one round trip.

The API only reads these keys (one writer per key: the supervisor owns ``replica_state_key``, the worker owns
``heartbeat_key``, which expires when the worker dies).
"""
from __future__ import annotations

import json
from datetime import UTC, datetime

import redis
from sqlalchemy.engine import Row

from api.services.errors import Unavailable
from schema import keys
from schema.models import Consumer
from schema.states import ProcessState

# most severe first: the consumer-level state is the worst state any replica reports
SEVERITY = [
    ProcessState.FATAL,
    ProcessState.BACKOFF,
    ProcessState.EXITED,
    ProcessState.STARTING,
    ProcessState.STOPPING,
    ProcessState.RUNNING,
    ProcessState.STOPPED,
]


def iso_utc(epoch: str | None) -> str | None:
    """An epoch-seconds decimal string as ISO-8601 UTC; None when absent or garbled."""
    try:
        return datetime.fromtimestamp(float(epoch), tz=UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        return None


def _state(value: str | None) -> ProcessState:
    try:
        return ProcessState(value) if value else ProcessState.UNKNOWN
    except ValueError:
        return ProcessState.UNKNOWN


def _partitions(value: str | None) -> list[str] | None:
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return [str(p) for p in parsed] if isinstance(parsed, list) else None


def replica_status(replica: int, state: dict[str, str], heartbeat: dict[str, str]) -> dict:
    """One replica's view: the supervisor's state hash first, the worker's heartbeat for what only it knows."""
    either = {**heartbeat, **state}  # the supervisor's word wins where both report
    return {
        "replica": replica,
        "state": _state(state.get("state")),
        "alive": bool(heartbeat) and heartbeat.get("phase") != "exited",  # a failed exit leaves its last beat
        "pid": _int(either.get("pid")),
        "host": either.get("host") or None,
        "supervisor_id": state.get("supervisor_id") or None,
        "generation": _int(either.get("generation")),
        "started_at": iso_utc(either.get("started_at")),
        "last_heartbeat": iso_utc(heartbeat.get("last_heartbeat")),
        "updated_at": iso_utc(state.get("updated_at")),
        "restarts": _int(state.get("restarts")),
        "last_error": state.get("last_error") or heartbeat.get("last_error") or None,
        "partitions": _partitions(heartbeat.get("partitions")),
        "messages": _int(heartbeat.get("messages")),
        "bytes": _int(heartbeat.get("bytes")),
        "errors": _int(heartbeat.get("errors")),
    }


def overall_state(replicas: list[dict]) -> ProcessState:
    """UNKNOWN until some replica reported; then the most severe reported state."""
    reported = {r["state"] for r in replicas if r["state"] != ProcessState.UNKNOWN}
    for state in SEVERITY:
        if state in reported:
            return state
    return ProcessState.UNKNOWN


class StatusService:
    def __init__(self, client: redis.Redis):
        self.client = client

    def status(self, consumer: Consumer | Row) -> dict:
        """``consumer``: anything with id, status, desired_state, generation and replicas (an ORM object or a
        Core row from ``ConsumerService.get_state``)."""
        count = consumer.replicas
        try:
            pipe = self.client.pipeline(transaction=False)
            for n in range(count):
                pipe.hgetall(keys.replica_state_key(consumer.id, n))
                pipe.hgetall(keys.heartbeat_key(consumer.id, n))
            raw = pipe.execute()
        except redis.RedisError as exc:
            raise Unavailable(
                f"Redis is unreachable, the live status cannot be read ({type(exc).__name__}); "
                "the consumer's desired state is still at GET /consumers/{id}/"
            ) from exc
        hashes = [{_text(k): _text(v) for k, v in h.items()} for h in raw]
        replicas = [replica_status(n, hashes[2 * n], hashes[2 * n + 1]) for n in range(count)]
        return {
            "id": consumer.id,
            "status": consumer.status,
            "state": overall_state(replicas),
            "desired_state": consumer.desired_state,
            "generation": consumer.generation,
            "replicas": replicas,
        }


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
