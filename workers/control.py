"""The worker's side of pause and resume: follow the consumer's pause key from a thread off the hot loop.

The API writes ``keys.pause_key`` (``{"paused", "generation"}``) and publishes the same value on the channel of
that name (api/services/commands.py). This thread subscribes first and reads the key after, so a write between
the two is seen either way; it reads the key again on every notification, every ``interval`` seconds and after
every reconnect, so a lost notification (Redis restarted, a dropped connection) only delays the change. It writes
``WorkerStatus.pause_wanted``, which the hot loop reads once per poll, never per message (workers/runner.py).

Only a value of the worker's own generation counts: a worker of a newer generation took its pause from its spec
(``WorkerSpec.paused``), written after the old value. A missing key (expired, or a Redis that lost its data)
changes nothing.
"""
from __future__ import annotations

import json
import logging
import threading

import redis

from schema import keys
from schema.ratelimited_log import Outage

log = logging.getLogger("kcm.worker")

RECONNECT_MAX = 5.0  # seconds between attempts while Redis is down


def desired_pause(value, generation: int) -> bool | None:
    """The pause a key's value asks of a worker of ``generation``, or None (absent, garbled, another generation)."""
    if value is None:
        return None
    try:
        data = json.loads(value)
        if int(data["generation"]) != generation:
            return None
        return bool(data["paused"])
    except (ValueError, TypeError, KeyError):
        return None


class PauseWatch(threading.Thread):
    """Started and stopped with the heartbeat (workers/heartbeat.py); writes ``status.pause_wanted``, which the
    Runner reads once per poll (None: no word from Redis yet, the spec's ``paused`` holds)."""

    def __init__(self, client: redis.Redis, status, consumer_id: str, *, interval: float):
        super().__init__(name="kcm-pause-watch", daemon=True)
        self.client = client
        self.status = status
        self.key = keys.pause_key(consumer_id)
        self.generation = status.generation
        self.interval = max(interval, 0.05)
        self._stop_event = threading.Event()
        self._outage = Outage(log, "RedisUnavailable", "following the pause key")

    def read(self) -> None:
        """GET the key and apply it; raises ``redis.RedisError``."""
        wanted = desired_pause(self.client.get(self.key), self.generation)
        if wanted is not None and wanted != self.status.pause_wanted:
            self.status.pause_wanted = wanted  # one attribute write: the hot loop reads it without a lock
            log.info("PauseRequested paused=%s generation=%s", wanted, self.generation)

    def read_now(self) -> None:
        """The first read, before the worker consumes: a worker spawned from a spec older than the key starts
        as the key says. A Redis that is down leaves it to the thread."""
        try:
            self.read()
        except (redis.RedisError, OSError) as exc:
            self._outage.failed(exc)

    def run(self) -> None:
        delay = 0.2
        while not self._stop_event.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.key)
                self.read()
                self._outage.recovered()
                delay = 0.2
                while not self._stop_event.is_set():
                    pubsub.get_message(timeout=self.interval)  # a notification, or the interval is up: read again
                    self.read()
            except (redis.RedisError, OSError) as exc:
                self._outage.failed(exc)
                self._stop_event.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX)
            finally:
                try:
                    pubsub.close()
                except (redis.RedisError, OSError):
                    pass

    def stop(self) -> None:
        self._stop_event.set()
