"""Watch a sink fill up from outside, the same way for kcm and for its baseline.

Both sides are timed by one observer: from the first poll that sees data durable in the sink to the first
poll that sees all of it. The rate counts only what became durable after the first sighting, so the
time the first batch took before it was seen is excluded from both sides alike.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field


@dataclass
class Window:
    first_at: float      # time.time() of the first poll that saw data
    first_count: int     # messages already durable at that poll
    last_at: float       # time.time() of the first poll that saw everything
    total: int
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time, count) at every change

    @property
    def seconds(self) -> float:
        return self.last_at - self.first_at

    @property
    def messages_per_s(self) -> float | None:
        return (self.total - self.first_count) / self.seconds if self.seconds > 0 else None

    def steady_messages_per_s(self, from_fraction: float = 0.25) -> float | None:
        """The rate from the first sample at ``from_fraction`` of the total to the end: start-up effects
        (a group rebalance when a second replica joins, cold caches) left out."""
        mark = next(((t, c) for t, c in self.samples if c >= self.total * from_fraction), None)
        if mark is None or self.last_at <= mark[0]:
            return None
        return (self.total - mark[1]) / (self.last_at - mark[0])


class FileProgress:
    """Messages durable in a raw file sink: its size over the bytes per line (value + newline)."""

    interval = 0.005

    def __init__(self, path: str, line_bytes: int):
        self.path, self.line_bytes = path, line_bytes

    def count(self) -> int:
        try:
            return os.stat(self.path).st_size // self.line_bytes
        except FileNotFoundError:
            return 0


class TopicProgress:
    """Messages in a destination topic: the sum of its high watermarks."""

    interval = 0.01

    def __init__(self, offsets, topic: str):
        self.offsets, self.topic = offsets, topic

    def count(self) -> int:
        return self.offsets.total(self.topic)


class TableProgress:
    """Rows in a sink table, cheaply: per partition, the highest offset stored (an index lookup), because
    one consumer commits its batches in order; the exact count is checked once at the end."""

    interval = 0.02

    def __init__(self, conn, table: str, topic: str, partitions: dict[int, int]):
        self.conn, self.table, self.topic = conn, table, topic
        self.low = dict(partitions)  # partition -> first offset in the topic (0 on a fresh one)

    def count(self) -> int:
        total = 0
        with self.conn.cursor() as cur:
            for partition, low in self.low.items():
                cur.execute(f'SELECT max("offset") FROM {self.table} WHERE topic = %s AND "partition" = %s',
                            (self.topic, partition))
                top = cur.fetchone()[0]
                total += 0 if top is None else top - low + 1
        self.conn.rollback()  # end the read transaction so the next poll sees new commits
        return total

    def exact(self) -> int:
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {self.table}")
            result = cur.fetchone()[0]
        self.conn.rollback()
        return result


class Stalled(RuntimeError):
    pass


def watch(progress, total: int, *, start_timeout: float = 120, stall_timeout: float = 60,
          alive=lambda: True, on_first=None) -> Window:
    """Poll ``progress.count()`` until it reaches ``total``. Raises ``Stalled`` if nothing moves for
    ``stall_timeout`` seconds (or nothing arrives in ``start_timeout``), or when ``alive()`` turns false.
    ``on_first()`` runs at the first sighting (to read the consuming processes' CPU time then)."""
    first_at, first_count = None, 0
    last_change, last_count = time.monotonic(), 0
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + start_timeout
    while True:
        count = progress.count()
        now = time.time()
        if count and first_at is None:
            first_at, first_count = now, count
            if on_first is not None:
                on_first()
        if count >= total:
            return Window(first_at=first_at, first_count=first_count, last_at=now, total=total, samples=samples)
        if count != last_count:
            last_count, last_change = count, time.monotonic()
            samples.append((now, count))
        if first_at is None and time.monotonic() > deadline:
            raise Stalled(f"nothing arrived in the sink within {start_timeout} s")
        if first_at is not None and time.monotonic() - last_change > stall_timeout:
            raise Stalled(f"sink stuck at {count}/{total} for {stall_timeout} s")
        if not alive():
            count = progress.count()
            if count >= total:
                return Window(first_at=first_at or now, first_count=first_count, last_at=time.time(), total=total,
                              samples=samples)
            raise Stalled(f"the producing process exited with the sink at {count}/{total}")
        time.sleep(progress.interval)
