"""The live status of a consumer: replica hashes the supervisor and the workers write, read in one round trip.

The API only reads these keys (one writer per key: the supervisor owns ``replica_state_key``, the worker owns
``heartbeat_key``, which expires when the worker dies).

Truthful, not just reported (docs/runtime.md, "What the status says"): a replica is RUNNING only when its own
current process (pid and generation of the state hash) heartbeats and holds partitions, or has none to hold (the
consumer's other live replicas hold them), and PAUSED when that process says it is paused (it still holds them and
heartbeats, and fetches nothing); a replica whose supervisor stopped heartbeating is UNKNOWN and
``stale``; the consumer's ``status`` column, written by the supervisor (a dead one cannot correct it), is folded
with what is live: ACTIVE only if at least one replica really runs or is paused (its workers are up). A replica
whose slot no live supervisor may run (its placement's labels carried by none) is UNKNOWN and says so.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime

import redis
from sqlalchemy.engine import Row

from api.services.errors import Unavailable
from api.services.worker_metrics import processor_status
from schema import keys
from schema.models import Consumer
from schema.states import ConsumerStatus, DesiredState, ProcessState

# most severe first: the consumer-level state is the worst state any replica reports
SEVERITY = [
    ProcessState.FATAL,
    ProcessState.BACKOFF,
    ProcessState.EXITED,
    ProcessState.WAITING,
    ProcessState.UNKNOWN,  # only a replica that reported but is not what it reported (stale, not beating)
    ProcessState.STARTING,
    ProcessState.STOPPING,
    ProcessState.PAUSED,  # a consumer is RUNNING only when no replica is paused
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


def _own_heartbeat(state: dict[str, str], heartbeat: dict[str, str]) -> bool:
    """The heartbeat is the current process's: same pid and generation as the state hash (where it says)."""
    if not heartbeat:
        return False
    for name in ("pid", "generation"):
        if state.get(name) and heartbeat.get(name) and state[name] != heartbeat[name]:
            return False
    return not (state.get("state") and not state.get("pid"))  # the supervisor says no process is live


def unplaced(state: dict[str, str], *, wanted: bool = True) -> str | None:
    """The labels no live supervisor carries, when the state hash is a supervisor's note that nobody may run the
    replica's slot (supervisor/assignment.py); a holder's word (never UNKNOWN) replaces it."""
    if not wanted or state.get("state") != ProcessState.UNKNOWN.value:
        return None
    return state.get("unplaced") or None


def replica_status(replica: int, state: dict[str, str], heartbeat: dict[str, str], *,
                   supervisor_alive: bool | None = None, partitions_elsewhere: bool = False,
                   wanted: bool = True) -> dict:
    """One replica's view: the supervisor's state hash first, the worker's heartbeat for what only it knows.

    ``supervisor_alive``: whether the supervisor named in the state hash still heartbeats (None: not checked).
    ``partitions_elsewhere``: another live replica of the consumer holds partitions.
    ``wanted``: the consumer's desired state is running or paused."""
    own = _own_heartbeat(state, heartbeat)
    beat = heartbeat if own else {}  # a dead predecessor's last beat says nothing about this process
    either = {**beat, **state}  # the supervisor's word wins where both report
    alive = own and heartbeat.get("phase") != "exited"  # a failed exit leaves its last beat
    partitions = _partitions(beat.get("partitions"))
    reported = _state(state.get("state"))
    truth, reason = reported, None
    labels = unplaced(state, wanted=wanted)
    if labels:  # nobody holds the slot: the note's writer is no holder, its liveness says nothing
        supervisor_alive = None
        reason = f"no live supervisor carries the labels {labels} of its placement: no supervisor may run it"
    elif state and supervisor_alive is False:
        truth = ProcessState.UNKNOWN
        reason = (f"supervisor {state.get('supervisor_id') or '?'} is not heartbeating: this is its last report "
                  f"({reported.value}), nothing supervises the replica")
    elif reported == ProcessState.RUNNING and not alive:
        truth = ProcessState.UNKNOWN
        reason = f"no heartbeat from the running process (pid {state.get('pid') or '?'})"
    elif reported == ProcessState.RUNNING and not partitions and not partitions_elsewhere:
        truth = ProcessState.STARTING
        reason = "consuming no partition yet (waiting for an assignment, or the topic is missing)"
    elif reported == ProcessState.RUNNING and beat.get("paused") == "1":
        truth = ProcessState.PAUSED
        reason = "paused: holds its partitions and its group membership, fetches nothing (POST .../resume/)"
    if reason is None and state.get("degraded"):
        reason = {"retrying": "retrying a failing batch (partitions paused)",
                  "recovering": "exited abnormally or failed to start recently; not yet stable"}.get(
                      state["degraded"], state["degraded"])
    return {
        "replica": replica,
        "state": truth,
        "reported_state": reported,
        "stale": bool(state) and supervisor_alive is False,
        "degraded": state.get("degraded") or None,
        "reason": reason,
        "alive": alive,
        "pid": _int(either.get("pid")),
        "host": None if labels else either.get("host") or None,
        "supervisor_id": None if labels else state.get("supervisor_id") or None,
        "epoch": _int(state.get("epoch")),  # the holder's slot lease (fencing token), docs/runtime.md
        "generation": _int(either.get("generation")),
        "started_at": iso_utc(either.get("started_at")),
        "last_heartbeat": iso_utc(beat.get("last_heartbeat")),
        "updated_at": iso_utc(state.get("updated_at")),
        "restarts": _int(state.get("restarts")),
        "last_error": state.get("last_error") or beat.get("last_error")
        or (heartbeat.get("last_error") if heartbeat.get("phase") == "exited" else None) or None,
        "partitions": partitions,
        "messages": _int(beat.get("messages")),
        "bytes": _int(beat.get("bytes")),
        "errors": _int(beat.get("errors")),
        "processors": processor_status(beat.get("processors")),  # counters, p50/p99 (api/services/worker_metrics.py)
    }


def overall_state(replicas: list[dict]) -> ProcessState:
    """UNKNOWN until some replica reported; then the most severe reported state."""
    reported = {r["state"] for r in replicas if r["state"] != ProcessState.UNKNOWN or r.get("reason")}
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
        states, beats = hashes[0::2], hashes[1::2]
        wanted = str(getattr(consumer.desired_state, "value", consumer.desired_state)) in WANTED_LIVE
        supervisors = self._supervisors_alive({s.get("supervisor_id") for s in states if not unplaced(s, wanted=wanted)}
                                              - {None, ""})
        holding = [n for n in range(count) if _own_heartbeat(states[n], beats[n]) and beats[n].get("phase") != "exited"
                   and _partitions(beats[n].get("partitions"))]
        replicas = [replica_status(n, states[n], beats[n], supervisor_alive=supervisors.get(states[n].get("supervisor_id")),
                                   partitions_elsewhere=any(h != n for h in holding), wanted=wanted)
                    for n in range(count)]
        status, reason = folded_status(consumer.status, consumer.desired_state, replicas)
        return {
            "id": consumer.id,
            "status": status,
            "status_reason": reason,
            "state": overall_state(replicas),
            "desired_state": consumer.desired_state,
            "generation": consumer.generation,
            "replicas": replicas,
            **_monitoring(self.client, consumer.id),  # lag and health (api/services/monitoring.py)
        }


    def _supervisors_alive(self, ids: set[str]) -> dict[str, bool]:
        """Whether each supervisor's heartbeat hash exists (it expires when the supervisor dies)."""
        if not ids:
            return {}
        ordered = sorted(ids)
        try:
            pipe = self.client.pipeline(transaction=False)
            for sid in ordered:
                pipe.exists(keys.supervisor_key(sid))
            return {sid: bool(n) for sid, n in zip(ordered, pipe.execute(), strict=True)}
        except redis.RedisError as exc:
            raise Unavailable(f"Redis is unreachable, the live status cannot be read ({type(exc).__name__})") from exc


# a paused replica's worker is up and holds the group: the seed status stays ACTIVE (``state`` says PAUSED)
LIVE_REPLICA_STATES = frozenset({ProcessState.RUNNING, ProcessState.PAUSED})
WANTED_LIVE = frozenset({DesiredState.RUNNING.value, DesiredState.PAUSED.value})


def folded_status(written, desired_state, replicas: list[dict]) -> tuple[ConsumerStatus, str | None]:
    """The supervisor's ``consumers.status`` folded with what is live now, and why it differs (or None)."""
    written = ConsumerStatus(written) if written else ConsumerStatus.INACTIVE
    running = any(r["state"] in LIVE_REPLICA_STATES for r in replicas)
    stale = [r["replica"] for r in replicas if r.get("stale")]
    wanted = str(getattr(desired_state, "value", desired_state)) in WANTED_LIVE
    if stale and wanted and not running:
        return ConsumerStatus.ERROR, "the supervisor of this consumer is not heartbeating: nothing consumes"
    if written == ConsumerStatus.ACTIVE and not running:
        return ConsumerStatus.INACTIVE, "no replica is consuming right now"
    return written, None


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _monitoring(client, consumer_id) -> dict:
    # imported here, not at the top: that module imports iso_utc from this one
    from api.services.monitoring import MonitoringService

    return MonitoringService(client).consumer(consumer_id)
