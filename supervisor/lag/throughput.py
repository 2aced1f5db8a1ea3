"""A consumer's throughput over the last minute, from its workers' heartbeat counters (``messages``, ``bytes``).

Pure, clock injected: the lag monitor feeds one ``Snapshot`` per consumer per sample and stores the ``Rate``
(``schema.keys.throughput_key``). A worker's counters start at 0 with each process, so a counter is only ever
compared with an earlier reading of the same process (``pid`` and ``started_at``); a new process contributes
what it counted, a first sighting of an old one is only a baseline. A rate is never negative.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Counters:
    process: str  # "pid@started_at": which process counted
    started_at: float
    messages: int
    bytes: int


@dataclass(frozen=True)
class Snapshot:
    at: float
    replicas: dict[int, Counters]


@dataclass(frozen=True)
class Rate:
    messages_per_second: float
    bytes_per_second: float
    window_seconds: float
    sampled_at: float


def counters_of(pid, started_at, messages, size) -> Counters | None:
    """A heartbeat's fields (bytes or text, as Redis returns them) as Counters; None when absent or garbled."""
    try:
        text = [v.decode() if isinstance(v, bytes) else v for v in (pid, started_at, messages, size)]
        if any(v in (None, "") for v in text):
            return None
        return Counters(process=f"{text[0]}@{text[1]}", started_at=float(text[1]), messages=int(text[2]),
                        bytes=int(text[3]))
    except (TypeError, ValueError):
        return None


def rate(snapshots: Sequence[Snapshot]) -> Rate | None:
    """Messages and bytes per second between the oldest and the newest snapshot (oldest first); None with fewer
    than two snapshots."""
    if len(snapshots) < 2 or snapshots[-1].at <= snapshots[0].at:
        return None
    start = snapshots[0].at
    last: dict[int, Counters] = {}
    messages = size = 0
    for index, snapshot in enumerate(snapshots):
        for replica, now in snapshot.replicas.items():
            before = last.get(replica)
            if before is not None and before.process == now.process:
                messages += max(now.messages - before.messages, 0)
                size += max(now.bytes - before.bytes, 0)
            elif index > 0 and (before is not None or now.started_at >= start):
                messages += now.messages  # a process that started within the window: all it counted is new
                size += now.bytes
            last[replica] = now  # else the first sighting of a process older than the window: the baseline
    span = snapshots[-1].at - start
    return Rate(messages_per_second=messages / span, bytes_per_second=size / span, window_seconds=span,
                sampled_at=snapshots[-1].at)


class ThroughputTracker:
    """The last minute of snapshots per consumer, in memory (a restarted monitor has a rate again after two
    samples, over the shorter span it has)."""

    def __init__(self, window_seconds: float = WINDOW_SECONDS):
        self.window_seconds = window_seconds
        self.history: dict[str, deque[Snapshot]] = {}

    def observe(self, consumer_id: str, snapshot: Snapshot) -> Rate | None:
        history = self.history.setdefault(consumer_id, deque())
        history.append(snapshot)
        # keep the newest snapshot at least a window old as the base, so the span is a full minute
        while len(history) > 2 and history[1].at <= snapshot.at - self.window_seconds:
            history.popleft()
        return rate(history)

    def forget(self, consumer_ids: Iterable[str]) -> None:
        for cid in consumer_ids:
            self.history.pop(cid, None)


def throughput_document(value: Rate) -> dict:
    return {"sampled_at": round(value.sampled_at, 3),
            "messages_per_second": round(value.messages_per_second, 3),
            "bytes_per_second": round(value.bytes_per_second, 3),
            "window_seconds": round(value.window_seconds, 3)}
