"""The worker's heartbeat: one pipelined HSET + EXPIRE every interval, from a thread off the hot loop.

The thread also keeps the lease alive and watches the parent: a worker whose supervisor is gone stops. In the same
pipeline as each beat it writes the errors recorded since the last one (workers/metrics.py); the beat carries the
pipeline's per-processor counters and batch latency (``processors``, schema/worker_metrics.py). It starts and stops
the pause watch (workers/control.py) with itself.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

import redis

from schema import keys
from schema.exits import EXIT_LEASE_HELD
from schema.ratelimited_log import Outage
from workers.control import PauseWatch
from workers.lease import Lease, LeaseLost
from workers.metrics import ErrorLog
from workers.parent import parent_gone

log = logging.getLogger("kcm.worker")


class WorkerStatus:
    """Counters and facts the hot loop updates (plain attribute writes) and the heartbeat publishes."""

    def __init__(self, *, pid: int, host: str, generation: int):
        self.pid = pid
        self.host = host
        self.generation = generation
        self.started_at = time.time()
        self.phase = "starting"  # starting -> consuming -> stopping -> exited
        self.partitions: list[str] = []
        self.messages = 0
        self.bytes = 0
        self.errors = 0
        self.last_error = ""
        self.retrying = False  # a failing batch is being retried (partitions paused)
        self.pause_wanted: bool | None = None  # the pause key's word (workers/control.py); None: none yet
        self.paused = False  # the poll loop holds its partitions paused on request (POST .../pause/)
        self.assignments = 0  # partition assignments received: unchanged across a pause and resume (no rebalance)
        self.recent_errors = ErrorLog()  # the error paths record here; the heartbeat writes them
        self.processors = None  # the pipeline's ``published_stats`` once the Runner attached it

    def fields(self) -> dict[str, str]:
        return {
            "pid": str(self.pid),
            "host": self.host,
            "generation": str(self.generation),
            "started_at": f"{self.started_at:.3f}",
            "last_heartbeat": f"{time.time():.3f}",
            "phase": self.phase,
            "partitions": json.dumps(sorted(self.partitions)),
            "messages": str(self.messages),
            "bytes": str(self.bytes),
            "errors": str(self.errors),
            "last_error": self.last_error,
            "retrying": "1" if self.retrying else "0",
            "paused": "1" if self.paused else "0",
            "assignments": str(self.assignments),
            "processors": json.dumps(self.processors() if self.processors is not None else [],
                                     separators=(",", ":")),
        }


class Heartbeat(threading.Thread):
    def __init__(self, client: redis.Redis, status: WorkerStatus, consumer_id: str, replica: int, *,
                 interval: float, lease: Lease, expected_parent: int | None):
        super().__init__(name="kcm-heartbeat", daemon=True)
        self.client = client
        self.status = status
        self.key = keys.heartbeat_key(consumer_id, replica)
        self.errors_key = keys.replica_errors_key(consumer_id, replica)
        self.replica = replica
        self.interval = interval
        self.ttl = max(1, int(round(interval * 3 * 1000)))  # ms
        self.lease = lease
        self.expected_parent = expected_parent
        self._stop_event = threading.Event()
        self._first = True
        self._outage = Outage(log, "HeartbeatFailed", "heartbeat and lease")
        self.pause_watch = PauseWatch(client, status, consumer_id, interval=interval)

    def start(self) -> None:
        self.pause_watch.read_now()
        self.pause_watch.start()
        super().start()

    def beat(self, *, alive: bool = True) -> None:
        """Write the heartbeat (``alive=False``: delete it, a clean exit) and the errors recorded since the last."""
        errors = self.status.recent_errors.take()
        pipe = self.client.pipeline(transaction=True)
        if not alive:
            pipe.delete(self.key)
        else:
            if self._first:
                pipe.delete(self.key)  # fields of a previous process must not survive into ours
            pipe.hset(self.key, mapping=self.status.fields())
            pipe.pexpire(self.key, self.ttl)
        ErrorLog.push(pipe, self.errors_key, self.replica, errors)
        try:
            pipe.execute()
        except redis.RedisError:
            self.status.recent_errors.restore(errors)
            raise
        self._first = False

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            if parent_gone(self.expected_parent):
                log.warning("ParentGone: supervisor %s exited; stopping", self.expected_parent)
                os.kill(os.getpid(), signal.SIGTERM)
                self.expected_parent = None
            try:
                self.lease.extend()
                self.beat()
                self._outage.recovered()
            except LeaseLost as exc:
                # another process owns this replica now: stop at once, commit nothing (redelivery, no twin)
                log.error("LeaseLost: %s; exiting without committing", exc)
                os._exit(EXIT_LEASE_HELD)
            except redis.RedisError as exc:
                self._outage.failed(exc)

    def stop(self, *, clean: bool) -> None:
        """A clean exit removes the heartbeat (alive means the key exists); a failed one leaves a last beat
        with ``phase=exited`` and ``last_error`` for the supervisor to read after it reaps us."""
        self._stop_event.set()
        self.pause_watch.stop()
        if self.is_alive():
            self.join(self.interval + 1)
        if not clean:  # the worker's failed exit is the last of its recent errors
            self.status.recent_errors.record("exit", self.status.last_error or "the worker exited abnormally")
        try:
            self.beat(alive=not clean)
        except redis.RedisError as exc:
            log.warning("HeartbeatFailed: final heartbeat: %s", exc)
