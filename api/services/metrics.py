"""GET /metrics: Prometheus text, one ``kcm_`` prefix, base units, bounded labels (docs/monitoring.md).

The consumer series are built at scrape time from the database (which consumers exist) and Redis (the lag
monitor's, the supervisor's and the workers' keys) by a custom collector, so a deleted consumer's series go
with it. The API's own HTTP metrics are counted per gunicorn worker; with ``PROMETHEUS_MULTIPROC_DIR`` set
(deploy/gunicorn.conf.py sets it, ``child_exit`` cleans up) prometheus_client sums them across workers.
"""
from __future__ import annotations

import json
import os
import time

import redis
import sqlalchemy as sa
from flask import Flask, g, has_request_context, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from api.metrics_setup import MULTIPROC_ENV
from api.services.exposition import TextFamily, render
from api.services.worker_metrics import ProcessorSeries
from schema import keys, logs
from schema.health import VERDICTS
from schema.models import Consumer
from schema.states import ProcessState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED_ROUTE = "unmatched"  # a 404 without a route: one label value, not one per probed path

HTTP_REQUESTS = Counter("kcm_http_requests_total", "HTTP requests the API answered",
                        ["method", "route", "status"], registry=None)
HTTP_DURATION = Histogram("kcm_http_request_duration_seconds", "Time the API took to answer a request",
                          ["method", "route"], registry=None,
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
VERDICT_NAMES = [v.value for v in VERDICTS]
STATE_NAMES = [s.value for s in ProcessState]
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _number(value) -> float | None:
    try:
        return float(value) if value not in (None, b"", "") else None
    except (TypeError, ValueError):
        return None


class KcmCollector:
    """The consumer, replica, supervisor and dead-letter series, read when Prometheus scrapes."""

    def __init__(self, engine, client: redis.Redis):
        self.engine = engine
        self.client = client

    def describe(self):
        return []  # built per scrape: nothing to check at registration

    def collect(self):
        database_up = GaugeMetricFamily("kcm_database_up", "1 when the state database answered this scrape")
        redis_up = GaugeMetricFamily("kcm_redis_up", "1 when Redis answered this scrape")
        try:
            consumers = self._consumers()
            database_up.add_metric([], 1)
        except sa.exc.SQLAlchemyError:
            consumers = None
            database_up.add_metric([], 0)
        yield database_up
        if consumers is None:
            return
        try:
            families = list(self._families(consumers))
            redis_up.add_metric([], 1)
        except redis.RedisError:
            families = []
            redis_up.add_metric([], 0)
        yield redis_up
        yield from families

    def _consumers(self) -> list[tuple[str, str, str, int]]:
        table = Consumer.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.id, table.c.topic, table.c.consumer_group, table.c.replicas))
            return [(str(r.id), r.topic, r.consumer_group, int(r.replicas or 0)) for r in rows]

    def _families(self, consumers):
        pipe = self.client.pipeline(transaction=False)
        per_consumer = (keys.lag_key, keys.health_key, keys.throughput_key) if consumers else ()
        for key_of in per_consumer:  # one reply for all consumers: a reply per key is most of Redis' time
            pipe.mget([key_of(cid) for cid, _topic, _group, _replicas in consumers])
        for cid, _topic, _group, replicas in consumers:
            pipe.zcard(keys.dead_letter_index(cid))
            for n in range(replicas):
                pipe.hmget(keys.replica_state_key(cid, n), "state", "restarts")
                pipe.hmget(keys.heartbeat_key(cid, n), "messages", "bytes", "errors", "phase", "processors")
        pipe.exists(keys.LAG_MONITOR_KEY)
        pipe.smembers(keys.SUPERVISORS_INDEX)
        raw = pipe.execute()
        supervisor_ids = sorted(_text(s) for s in raw[-1])
        sup_pipe = self.client.pipeline(transaction=False)
        for sid in supervisor_ids:
            sup_pipe.exists(keys.supervisor_key(sid))
        supervisors_alive = sup_pipe.execute() if supervisor_ids else []

        info = TextFamily("kcm_consumer_info", "1 for each consumer, with its topic and group",
                          labels=["consumer_id", "topic", "consumer_group"])
        lag_messages = TextFamily("kcm_consumer_lag_messages", "Messages not yet consumed, per partition",
                                  labels=["consumer_id", "topic", "partition"])
        lag_seconds = TextFamily("kcm_consumer_lag_seconds",
                                 "Age of the oldest unconsumed message, per partition (0 when caught up)",
                                 labels=["consumer_id", "topic", "partition"])
        health = TextFamily("kcm_consumer_health", "1 for the consumer's current health verdict, else 0",
                            labels=["consumer_id", "verdict"])
        dead_letters = TextFamily("kcm_dead_letters", "Dead letters kept for the consumer",
                                  labels=["consumer_id"])
        messages = TextFamily("kcm_consumer_messages", "Messages delivered by the replica's current worker",
                              labels=["consumer_id", "replica"], kind="counter")
        sizes = TextFamily("kcm_consumer_bytes", "Payload bytes delivered by the replica's current worker",
                           labels=["consumer_id", "replica"], kind="counter")
        per_second = TextFamily("kcm_consumer_messages_per_second",
                                "Messages the consumer delivered per second over the last minute",
                                labels=["consumer_id"])
        bytes_per_second = TextFamily("kcm_consumer_bytes_per_second",
                                      "Payload bytes the consumer delivered per second over the last minute",
                                      labels=["consumer_id"])
        states = TextFamily("kcm_replica_state", "1 for the replica's current process state, else 0",
                            labels=["consumer_id", "replica", "state"])
        errors = TextFamily("kcm_consumer_errors", "Errors the replica's current worker met (Kafka, "
                            "delivery, exit)", labels=["consumer_id", "replica"], kind="counter")
        restarts = TextFamily("kcm_replica_restarts", "Times the supervisor restarted the replica's worker",
                              labels=["consumer_id", "replica"], kind="counter")
        processors = ProcessorSeries()  # the live replicas' per-processor figures (api/services/worker_metrics.py)
        lags, verdicts, rates = raw[:3] if consumers else ([], [], [])
        i = len(per_consumer)
        for k, (cid, topic, group, replicas) in enumerate(consumers):
            lag_raw, health_raw, rate_raw, dead = lags[k], verdicts[k], rates[k], raw[i]
            i += 1
            info.add_metric([cid, topic, group], 1)
            lag = json.loads(_text(lag_raw)) if lag_raw else None
            for p in (lag or {}).get("partitions", ()):
                labels = [cid, topic, str(p["partition"])]
                lag_messages.add_metric(labels, p["lag_messages"])
                if p.get("lag_seconds") is not None:
                    lag_seconds.add_metric(labels, p["lag_seconds"])
            verdict = json.loads(_text(health_raw)).get("verdict") if health_raw else "UNKNOWN"
            health.add_enum([cid], VERDICT_NAMES, verdict)
            dead_letters.add_metric([cid], dead or 0)
            rate = json.loads(_text(rate_raw)) if rate_raw else None
            if rate is not None:
                per_second.add_metric([cid], rate["messages_per_second"])
                bytes_per_second.add_metric([cid], rate["bytes_per_second"])
            for n in range(replicas):
                (state, restarted), (count, size, errored, phase, published) = raw[i], raw[i + 1]
                i += 2
                if _number(restarted) is not None:
                    restarts.add_metric([cid, str(n)], _number(restarted))
                if _number(errored) is not None:
                    errors.add_metric([cid, str(n)], _number(errored))
                if published and _text(phase) != "exited":  # live replicas only: a failed exit's last beat lingers
                    processors.add(cid, _text(published))
                states.add_enum([cid, str(n)], STATE_NAMES, _text(state) if state else ProcessState.UNKNOWN.value)
                if _number(count) is not None:
                    messages.add_metric([cid, str(n)], _number(count))
                if _number(size) is not None:
                    sizes.add_metric([cid, str(n)], _number(size))
        monitor_up = TextFamily("kcm_lag_monitor_up", "1 while the lag monitor heartbeats")
        monitor_up.add_metric([], 1 if raw[-2] else 0)
        supervisor_up = TextFamily("kcm_supervisor_up", "1 while the supervisor heartbeats, 0 once its "
                                   "heartbeat expired (until the index is cleaned)", labels=["supervisor_id"])
        for sid, alive in zip(supervisor_ids, supervisors_alive, strict=True):
            supervisor_up.add_metric([sid], 1 if alive else 0)
        yield from (info, lag_messages, lag_seconds, health, dead_letters, messages, sizes, per_second,
                    bytes_per_second, states, monitor_up, supervisor_up, errors, restarts)
        yield from processors.families()


def scrape(engine, client: redis.Redis) -> bytes:
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # every gunicorn worker's HTTP counts, summed
    else:
        registry.register(HTTP_REQUESTS)
        registry.register(HTTP_DURATION)
    # kcm's own series are written by api/services/exposition.py: ~50,000 samples at 500 consumers
    return generate_latest(registry) + render(KcmCollector(engine, client).collect()).encode("utf-8")


def install_http_metrics(app: Flask) -> None:
    """Count and time every request; give log lines the request id (schema.logs)."""

    def start_timer():
        g.kcm_started = time.perf_counter()

    def observe(response):
        started = g.pop("kcm_started", None)
        method = request.method if request.method in METHODS else "OTHER"
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        if started is not None:
            HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)
        return response

    app.before_request_funcs.setdefault(None, []).insert(0, start_timer)  # before auth: a 401 is timed too
    app.after_request(observe)
    logs.set_request_id_provider(lambda: g.get("kcm_request_id") if has_request_context() else None)
