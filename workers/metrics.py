"""The worker's recent errors: recorded on the error paths (main thread), written to Redis by the heartbeat thread.

``record`` only appends to a bounded deque, so an error path never waits on Redis and an outage keeps the newest
``REPLICA_ERRORS_MAX``; the heartbeat ``take``s them and pushes them in the same pipeline as its beat (LPUSH +
LTRIM + EXPIRE on schema.keys.replica_errors_key), and ``restore``s them if that write failed. Every text goes
through ``redact`` (the worker's ``schema.secrets.Redactor``, the scrubbing ``last_error`` gets) and is cut to
``ERROR_MESSAGE_MAX``. The lock is taken on error paths and once per beat, never in the hot loop.
"""
from __future__ import annotations

import collections
import threading
import time

from schema import keys
from schema.worker_metrics import ERROR_KINDS, ERROR_MESSAGE_MAX, error_item

Entry = tuple[float, str | None, str, str]  # (time, processor id, kind, scrubbed text)


class ErrorLog:
    def __init__(self, *, clock=time.time):
        self.redact = str  # the Runner installs the worker's Redactor once it has one
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: collections.deque[Entry] = collections.deque(maxlen=keys.REPLICA_ERRORS_MAX)

    def record(self, kind: str, text: str, processor: str | None = None) -> None:
        if kind not in ERROR_KINDS:  # a programming error: the kinds are a closed list the API documents
            raise ValueError(f"unknown error kind {kind!r}")
        entry = (self._clock(), processor, kind, self.redact(text)[:ERROR_MESSAGE_MAX])
        with self._lock:
            self._pending.append(entry)

    def take(self) -> list[Entry]:
        """Every error recorded since the last take, oldest first."""
        with self._lock:
            entries = list(self._pending)
            self._pending.clear()
        return entries

    def restore(self, entries: list[Entry]) -> None:
        """Entries a failed write did not store go back ahead of newer ones; the newest MAX are kept."""
        with self._lock:
            merged = [*entries, *self._pending]
            self._pending.clear()
            self._pending.extend(merged)

    @staticmethod
    def push(pipe, key: str, replica: int, entries: list[Entry]) -> None:
        """LPUSH oldest first (the list reads newest first), LTRIM, EXPIRE: queued on the caller's pipeline."""
        if entries:
            pipe.lpush(key, *(error_item(at=at, replica=replica, processor=processor, kind=kind, message=text)
                              for at, processor, kind, text in entries))
            pipe.ltrim(key, 0, keys.REPLICA_ERRORS_MAX - 1)
            pipe.expire(key, keys.REPLICA_ERRORS_TTL)
