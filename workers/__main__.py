"""``python -m workers``: one consumer replica, specified by ``KCM_WORKER_SPEC`` (see schema/spec.py).

Exit codes (``schema.exits``): 0 stopped on request; 78 configuration error (FATAL, no retry: a bad processor
config, an unresolvable secret, a setting librdkafka refuses); 75 another live process holds this replica's
lease; 69 Kafka unreachable at start; 70 a batch could not be delivered; 143 cold stop.

A Redis that is down at start is not a failed start: the worker waits for it (backoff, logged rate-limited)
before it takes the lease, and the supervisor does not count the wait against the start timeout.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time

import redis

from processors.base import FatalError
from processors.context import ProcessorContext
from processors.pipeline import Pipeline
from schema.exits import (
    EXIT_COLD_STOP,
    EXIT_CONFIG,
    EXIT_LEASE_HELD,
    EXIT_OK,
    EXIT_SOFTWARE,
    REDIS_SOCKET_TIMEOUT,
)
from schema.logs import setup_from_env
from schema.ratelimited_log import Outage
from schema.redact import redacted
from schema.secrets import Redactor
from schema.settings import Settings
from schema.spec import SPEC_ENV, WorkerSpec
from workers.config import ConsumerConfigError, consumer_config
from workers.heartbeat import Heartbeat, WorkerStatus
from workers.lease import Lease
from workers.parent import die_with_parent, expected_parent, parent_gone
from workers.runner import Runner, WorkerExit

log = logging.getLogger("kcm.worker")


def _setup_logging(level: str, spec: WorkerSpec | None) -> None:
    static = {"consumer_id": spec.consumer_id, "replica": spec.replica, "generation": spec.generation} if spec else None
    setup_from_env("worker", level=level, static=static)  # schema/logs.py: KCM_LOG_FORMAT


def main() -> int:
    die_with_parent(signal.SIGTERM)
    parent = expected_parent()
    if parent_gone(parent):  # the supervisor died between fork and prctl
        return EXIT_COLD_STOP
    try:
        settings = Settings.from_env()
        spec = WorkerSpec.from_json(os.environ[SPEC_ENV])
    except KeyError:
        _setup_logging("INFO", None)
        log.error("ConsumerConfigError: %s is not set", SPEC_ENV)
        return EXIT_CONFIG
    except (ValueError, TypeError) as exc:
        _setup_logging("INFO", None)
        log.error("ConsumerConfigError: bad worker spec or settings: %s", exc)
        return EXIT_CONFIG
    _setup_logging(settings.log_level, spec)

    host = socket.gethostname()
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=REDIS_SOCKET_TIMEOUT,
                                  socket_connect_timeout=REDIS_SOCKET_TIMEOUT)
    ttl = settings.heartbeat_interval * 3
    lease = Lease(client, spec.consumer_id, spec.replica, pid=os.getpid(), host=host, ttl=ttl)
    acquired = _take_lease(lease, ttl, parent, redacted(settings.redis_url))
    if acquired is None:
        return EXIT_COLD_STOP
    if not acquired:
        log.error("LeaseHeld: replica %s/%s is held by %s; not consuming", spec.consumer_id, spec.replica,
                  lease.holder() or "a process that just exited")
        return EXIT_LEASE_HELD

    status = WorkerStatus(pid=os.getpid(), host=host, generation=spec.generation)
    heartbeat = Heartbeat(client, status, spec.consumer_id, spec.replica, interval=settings.heartbeat_interval,
                          lease=lease, expected_parent=parent)
    try:
        heartbeat.beat()
    except redis.RedisError as exc:
        log.warning("HeartbeatFailed: first heartbeat: %s", exc)
    heartbeat.start()
    code = 1
    try:
        code = _run(spec, settings, client, status, heartbeat)
    finally:
        status.phase = "exited"
        heartbeat.stop(clean=code == EXIT_OK)
        try:
            lease.release()
        except redis.RedisError as exc:
            log.warning("LeaseReleaseFailed: %s", exc)
    return code


def _take_lease(lease: Lease, ttl: float, parent: int | None, where: str) -> bool | None:
    """Take the lease, waiting (backoff up to 5 s) for as long as Redis is down; None if the supervisor went
    away meanwhile. A killed predecessor's lease expires within its TTL: wait that long for it."""
    outage = Outage(log, "RedisUnavailable", f"taking the replica lease at {where} (waiting for Redis)")
    delay = 0.2
    while True:
        try:
            acquired = lease.acquire(wait=ttl + 1.0)
        except redis.RedisError as exc:
            outage.failed(exc)
            if parent_gone(parent):
                return None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        outage.recovered()
        return acquired


def _run(spec: WorkerSpec, settings: Settings, client, status: WorkerStatus, heartbeat: Heartbeat) -> int:
    context = ProcessorContext.for_worker(spec, settings, client)
    runner = None
    pipeline = None
    try:
        redactor = Redactor()
        config = consumer_config(spec, settings, os.environ, redactor=redactor)
        pipeline = Pipeline.build(spec.processors, context=context)
        pipeline.open()
        runner = Runner(spec, settings, config, pipeline, status, redactor)
        signal.signal(signal.SIGTERM, _with_deadline(runner, settings.stopwaitsecs))
        signal.signal(signal.SIGINT, _with_deadline(runner, settings.stopwaitsecs))
        code = runner.run()
        log.info("WorkerStopped consumer=%s replica=%s messages=%s", spec.consumer_id, spec.replica, status.messages)
        return code
    except ConsumerConfigError as exc:
        return _fail(status, EXIT_CONFIG, f"ConsumerConfigError: {exc}")
    except FatalError as exc:
        return _fail(status, EXIT_CONFIG, f"ProcessorFatalError: {exc}")
    except WorkerExit as exc:
        return _fail(status, exc.code, exc.reason)
    except Exception as exc:  # anything else: recorded, non-zero, the supervisor restarts us
        log.exception("WorkerCrashed consumer=%s", spec.consumer_id)
        return _fail(status, EXIT_SOFTWARE, f"WorkerCrashed: {type(exc).__name__}: {exc}")
    finally:
        if runner is not None:
            runner.close()
        if pipeline is not None:
            pipeline.close()


def _fail(status: WorkerStatus, code: int, reason: str) -> int:
    status.last_error = reason
    status.errors += 1
    log.error("%s (exit %s)", reason, code)
    return code


def _with_deadline(runner: Runner, stopwaitsecs: float):
    def handler(signum, frame):
        first = not runner.stopping
        runner.request_stop(signum, frame)
        if first:  # nobody may be left to SIGKILL us (orphan): bound the warm stop ourselves
            timer = threading.Timer(max(stopwaitsecs, 0.5), os._exit, args=(EXIT_COLD_STOP,))
            timer.daemon = True
            timer.start()
    return handler


if __name__ == "__main__":
    sys.exit(main())
