"""What a worker publishes about its pipeline, read back by the API (standard library only; docs/monitoring.md).

Per processor: the pipeline's counters (``COUNTERS``) and the batch latency, ``process`` + ``flush`` seconds per
delivered batch, in fixed buckets (``BATCH_LATENCY_BUCKETS``). The heartbeat carries them as one JSON field,
``processors``: ``[{"id", "type", "batches", "retries", "dead_lettered", "skipped", "dropped" (messages a step
let not through), "latency": {"buckets": [cumulative count per bound, +Inf last], "sum": seconds}}]``, the
Prometheus histogram shape, so replicas sum bucket by bucket and p50/p99 are estimated like PromQL's
``histogram_quantile``.

The replica's recent errors are JSON items of a capped list (``schema.keys.replica_errors_key``):
``{"time", "replica", "processor", "kind", "message"}``, never a payload, the message already scrubbed.
"""
from __future__ import annotations

import json
import math
from bisect import bisect_left

# upper bounds (seconds, inclusive: Prometheus ``le``); a batch slower than the last lands in +Inf
BATCH_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
COUNTERS = ("batches", "retries", "dead_lettered", "skipped", "dropped")
ERROR_KINDS = ("retry", "batch_failed", "dead_lettered", "skipped", "kafka", "exit")
ERROR_MESSAGE_MAX = 500  # characters kept of an error's text


class BatchLatency:
    """One processor's histogram, written by the hot loop: one bucket increment and one addition per batch."""

    __slots__ = ("counts", "sum")

    def __init__(self):
        self.counts = [0] * (len(BATCH_LATENCY_BUCKETS) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BATCH_LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    def published(self) -> dict:
        """The cumulative shape the heartbeat carries (read from another thread: a snapshot, not a lock)."""
        counts, total, running = list(self.counts), self.sum, 0
        cumulative = []
        for count in counts:
            running += count
            cumulative.append(running)
        return {"buckets": cumulative, "sum": round(total, 6)}


def valid_buckets(value) -> list[int] | None:
    """A published cumulative bucket list of today's layout, or None (garbled, or another layout)."""
    if not isinstance(value, list) or len(value) != len(BATCH_LATENCY_BUCKETS) + 1:
        return None
    if not all(isinstance(v, int) and v >= 0 for v in value):
        return None
    return value if all(a <= b for a, b in zip(value, value[1:], strict=False)) else None


def quantile(q: float, cumulative: list[int]) -> float | None:
    """Estimate the q-quantile from cumulative bucket counts, as PromQL's ``histogram_quantile`` does: linear
    within the bucket the rank falls in, from 0 for the first; a rank in +Inf gives the highest finite bound.
    None without observations."""
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        return None
    rank = q * total
    index = bisect_left(cumulative, rank)
    if index >= len(BATCH_LATENCY_BUCKETS):
        return BATCH_LATENCY_BUCKETS[-1]
    lower = BATCH_LATENCY_BUCKETS[index - 1] if index > 0 else 0.0
    below = cumulative[index - 1] if index > 0 else 0
    in_bucket = cumulative[index] - below
    if in_bucket <= 0:
        return BATCH_LATENCY_BUCKETS[index]
    return lower + (BATCH_LATENCY_BUCKETS[index] - lower) * (rank - below) / in_bucket


def parse_processors(raw: str | None) -> list[dict]:
    """The heartbeat's ``processors`` field, each entry checked; garbled entries are left out."""
    if not raw:
        return []
    try:
        entries = json.loads(raw)
    except ValueError:
        return []
    parsed = []
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        counters = {name: entry.get(name) if isinstance(entry.get(name), int) else 0 for name in COUNTERS}
        latency = entry.get("latency") if isinstance(entry.get("latency"), dict) else {}
        total = latency.get("sum")
        parsed.append({"id": entry["id"], "type": str(entry.get("type") or ""), **counters,
                       "buckets": valid_buckets(latency.get("buckets")),
                       "sum": float(total) if isinstance(total, (int, float)) and math.isfinite(total) else 0.0})
    return parsed


def error_item(*, at: float, replica: int, processor: str | None, kind: str, message: str) -> str:
    return json.dumps({"time": round(at, 3), "replica": replica, "processor": processor, "kind": kind,
                       "message": message[:ERROR_MESSAGE_MAX]})


def parse_error_item(raw: str) -> dict | None:
    try:
        item = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(item, dict) or not isinstance(item.get("time"), (int, float)):
        return None
    processor = item.get("processor")
    return {"time": float(item["time"]), "replica": item.get("replica") if isinstance(item.get("replica"), int) else None,
            "processor": processor if isinstance(processor, str) else None, "kind": str(item.get("kind") or ""),
            "message": str(item.get("message") or "")[:ERROR_MESSAGE_MAX]}
