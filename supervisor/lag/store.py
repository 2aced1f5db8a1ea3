"""Everything the lag monitor reads from and writes to Redis (key names from schema.keys only).

It is the one writer of ``lag_key``, ``lag_window_key``, ``lag_history_key``, ``health_key``, ``throughput_key`` and
``LAG_MONITOR_KEY`` (``alerted_key``: supervisor/lag/alerts.py). Every one of them expires: when the monitor stops,
readers see no lag, no throughput and an UNKNOWN verdict, never a stale one.
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from schema import keys
from schema.health import PartitionSample, ProcessorErrors, Sample
from schema.worker_metrics import parse_processors
from supervisor.lag.throughput import Counters, counters_of

MIN_TTL = 15.0


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def encode_sample(sample: Sample) -> str:
    document = {"at": round(sample.at, 3), "p": {
        str(p): [s.committed, s.high_watermark, s.lag_messages,
                 None if s.lag_seconds is None else round(s.lag_seconds, 3)]
        for p, s in sample.partitions.items()}}
    if sample.errors:
        document["e"] = {processor: {"t": e.processor_type, "r": {str(n): list(v) for n, v in e.replicas.items()}}
                         for processor, e in sample.errors.items()}
    return json.dumps(document, separators=(",", ":"))


def decode_sample(text: str) -> Sample | None:
    try:
        data = json.loads(text)
        return Sample(at=float(data["at"]), partitions={
            int(p): PartitionSample(committed=v[0], high_watermark=int(v[1]), lag_messages=int(v[2]),
                                    lag_seconds=v[3]) for p, v in data["p"].items()},
            errors={str(processor): ProcessorErrors(str(e["t"]), {int(n): (float(v[0]), int(v[1]))
                                                                   for n, v in e["r"].items()})
                    for processor, e in (data.get("e") or {}).items()})
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None  # a garbled entry is skipped, the window goes on


def history_point(previous: Sample | None, sample: Sample) -> dict:
    """The dashboard's lag chart point: total lag, and the messages committed per second since ``previous``
    (None without one; a rewound offset counts 0, never a negative rate)."""
    rate = None
    if previous is not None and sample.at > previous.at:
        moved = sum(max((s.committed or 0) - (previous.partitions[p].committed or 0), 0)
                    for p, s in sample.partitions.items() if p in previous.partitions)
        rate = round(moved / (sample.at - previous.at), 2)
    return {"at": round(sample.at, 3), "lag": sum(s.lag_messages for s in sample.partitions.values()), "rate": rate}


def decode_point(text: str) -> dict | None:
    try:
        data = json.loads(text)
        rate = data["rate"]
        return {"at": float(data["at"]), "lag": int(data["lag"]), "rate": None if rate is None else float(rate)}
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class ReplicaView:
    """What the supervisor's state hashes and the workers' heartbeats say about one consumer's replicas."""
    states: list[tuple[int, str]] = field(default_factory=list)  # (replica, ProcessState value)
    held: list[str] = field(default_factory=list)  # "topic:partition" entries live workers hold
    failed_starts: dict[int, int] = field(default_factory=dict)  # replica -> failed starts in a row
    fatal: dict[int, str] = field(default_factory=dict)  # FATAL replica -> its last error
    counters: dict[int, Counters] = field(default_factory=dict)  # replica -> its worker's heartbeat counters
    processors: dict[int, list[dict]] = field(default_factory=dict)  # replica -> parse_processors of its heartbeat

    def processor_errors(self) -> dict[str, ProcessorErrors]:
        """Per processor id, each replica's published retries + dead-lettered + skipped, with its worker's start."""
        errors: dict[str, ProcessorErrors] = {}
        for n, entries in sorted(self.processors.items()):
            if n not in self.counters:
                continue  # no process identity: its counters cannot be compared
            started_at = round(self.counters[n].started_at, 3)
            for entry in entries:
                found = errors.setdefault(entry["id"], ProcessorErrors(entry["type"], {}))
                found.replicas[n] = (started_at, entry["retries"] + entry["dead_lettered"] + entry["skipped"])
        return errors


class LagStore:
    def __init__(self, client: redis.Redis, *, interval: float, window: int):
        self.client = client
        self.interval = interval
        self.window = window
        self.ttl = max(3 * interval + 5, MIN_TTL)  # the latest sample and verdict outlive ~3 missed samples
        self.window_ttl = max((window + 2) * interval + 60, MIN_TTL)  # a restarted monitor continues its window
        self.history_points = math.ceil(keys.LAG_HISTORY_SECONDS / interval) + 1  # spans the whole chart
        self.history_ttl = keys.LAG_HISTORY_SECONDS + 60
        self.newest: dict[str, Sample] = {}  # per consumer, the newest sample read: the next history point's base
        self.started_at = time.time()

    def read(self, consumer_ids: list[str]) -> dict[str, tuple[list[Sample], tuple[str, float] | None]]:
        """Each consumer's window (oldest first) and its previous ``(verdict, since)``, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for cid in consumer_ids:
            pipe.lrange(keys.lag_window_key(cid), 0, self.window - 1)
            pipe.get(keys.health_key(cid))
        raw = pipe.execute()
        result = {}
        for i, cid in enumerate(consumer_ids):
            samples = [s for s in (decode_sample(_text(item)) for item in reversed(raw[2 * i])) if s is not None]
            if samples:
                self.newest[cid] = samples[-1]
            else:
                self.newest.pop(cid, None)
            previous = None
            if raw[2 * i + 1]:
                try:
                    health = json.loads(_text(raw[2 * i + 1]))
                    previous = (str(health["verdict"]), float(health["since"]))
                except (ValueError, KeyError, TypeError):
                    previous = None
            result[cid] = (samples, previous)
        return result

    def replica_views(self, replicas: dict[str, int]) -> dict[str, ReplicaView]:
        """For each consumer (``id -> replica count``), its ReplicaView, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        order = [(cid, n) for cid, count in replicas.items() for n in range(count)]
        for cid, n in order:
            pipe.hmget(keys.replica_state_key(cid, n), "state", "retries", "last_error")
            pipe.hmget(keys.heartbeat_key(cid, n), "phase", "partitions", "pid", "started_at", "messages", "bytes",
                       "processors")
        raw = pipe.execute()
        views = {cid: ReplicaView() for cid in replicas}
        for i, (cid, n) in enumerate(order):
            (state, retries, last_error), (phase, partitions, pid, started_at, messages, size, processors) = \
                raw[2 * i:2 * i + 2]
            view = views[cid]
            if processors:
                view.processors[n] = parse_processors(_text(processors))
            if state:
                view.states.append((n, _text(state)))
                view.failed_starts[n] = int(retries) if retries and _text(retries).isdigit() else 0
                if _text(state) == "FATAL":
                    view.fatal[n] = _text(last_error or b"")
            counters = counters_of(pid, started_at, messages, size)
            if counters is not None:
                view.counters[n] = counters
            if partitions and _text(phase or b"") not in ("", "exited"):
                try:
                    view.held.extend(str(p) for p in json.loads(_text(partitions)))
                except (ValueError, TypeError):
                    pass
        return views

    def write(self, results: Iterable[tuple[str, Sample | None, dict | None, dict, dict | None]]) -> None:
        """``(consumer_id, sample or None, lag document or None, health document, throughput document or None)``: a
        missing sample leaves a gap in the window and removes the latest lag (it would be stale). A sample is also
        a point of the 15-minute lag history, against the newest sample ``read`` found."""
        pipe = self.client.pipeline(transaction=False)
        for cid, sample, lag, health, throughput in results:
            if sample is not None:
                window_key = keys.lag_window_key(cid)
                pipe.lpush(window_key, encode_sample(sample))
                pipe.ltrim(window_key, 0, self.window - 1)
                pipe.pexpire(window_key, int(self.window_ttl * 1000))
                history_key = keys.lag_history_key(cid)
                pipe.lpush(history_key, json.dumps(history_point(self.newest.get(cid), sample), separators=(",", ":")))
                pipe.ltrim(history_key, 0, self.history_points - 1)
                pipe.expire(history_key, self.history_ttl)
                self.newest[cid] = sample
            if lag is not None:
                pipe.set(keys.lag_key(cid), json.dumps(lag, separators=(",", ":")), px=int(self.ttl * 1000))
            else:
                pipe.delete(keys.lag_key(cid))
            pipe.set(keys.health_key(cid), json.dumps(health, separators=(",", ":")), px=int(self.ttl * 1000))
            if throughput is not None:
                pipe.set(keys.throughput_key(cid), json.dumps(throughput, separators=(",", ":")),
                         px=int(self.ttl * 1000))
        pipe.execute()

    def forget(self, consumer_ids: Iterable[str]) -> None:
        """A deleted consumer's keys go at once (its series leave /metrics on the next scrape)."""
        consumer_ids = list(consumer_ids)
        names = [name for cid in consumer_ids
                 for name in (keys.lag_key(cid), keys.lag_window_key(cid), keys.lag_history_key(cid),
                              keys.health_key(cid), keys.throughput_key(cid))]
        for cid in consumer_ids:
            self.newest.pop(cid, None)
        if names:
            self.client.delete(*names)

    def beat(self, consumers: int, sample_seconds: float) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(keys.LAG_MONITOR_KEY, mapping={
            "pid": str(os.getpid()), "host": socket.gethostname(), "started_at": f"{self.started_at:.3f}",
            "last_sample": f"{time.time():.3f}", "consumers": str(consumers), "interval": f"{self.interval:g}",
            "sample_seconds": f"{sample_seconds:.3f}"})
        pipe.pexpire(keys.LAG_MONITOR_KEY, int(self.ttl * 1000))
        pipe.execute()

    def withdraw(self) -> None:
        self.client.delete(keys.LAG_MONITOR_KEY)
