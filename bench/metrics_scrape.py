"""Benchmark: one Prometheus scrape of ``GET /metrics`` with N consumers x P partitions (default 500 x 4) in the
state, against the same gunicorn's ``GET /healthz`` (the floor: a request that reads nothing).

Redis is filled the way the real writers fill it: the lag monitor's keys through ``LagStore`` (lag, window,
verdict, throughput, its heartbeat), each replica's heartbeat from a ``WorkerStatus``, a supervisor-style state
hash, dead letters in the index. The web process runs as deployed (deploy/gunicorn.conf.py: two workers,
multiprocess metrics), and is scraped with a viewer key, one request per connection, as Prometheus does."""
from __future__ import annotations

import http.client
import time

from bench.api_client import auth_headers
from bench.api_latency import insert_consumers
from bench.harness import wait_until
from bench.results import Result, Target, fmt
from bench.stack import Service, free_port
from bench.stats import percentile, ratio

WARMUP = 10
FAKE_SUPERVISOR = "kcm-bench-metrics"  # the stack's supervisor leaves state hashes of other supervisors alone


def fill_redis(h, ids: list[str], partitions: int) -> None:
    import redis

    from schema import keys
    from schema.health import PartitionSample, Sample, Thresholds, judge_consumer
    from supervisor.lag.monitor import health_document, lag_document
    from supervisor.lag.store import LagStore
    from supervisor.lag.throughput import Rate, throughput_document
    from workers.heartbeat import WorkerStatus

    client = redis.Redis.from_url(h.env.redis_url)
    store = LagStore(client, interval=3600, window=10)  # long TTLs: the keys outlive the run
    now = time.time()
    results = []
    for n, cid in enumerate(ids):
        sample = Sample(at=now, partitions={p: PartitionSample(committed=1000 * p + n, high_watermark=1000 * p + n + 7,
                                                               lag_messages=7, lag_seconds=1.5 + p)
                                            for p in range(partitions)})
        judgement = judge_consumer([sample], Thresholds(window=10), desired_running=True,
                                   replica_states=[(0, "RUNNING")], held_partitions=range(partitions))
        rate = Rate(messages_per_second=120.5, bytes_per_second=12_050.0, window_seconds=60.0, sampled_at=now)
        results.append((cid, sample, lag_document(sample, judgement), health_document(judgement, now, now),
                        throughput_document(rate)))
    store.write(results)
    store.beat(len(ids), 0.1)
    pipe = client.pipeline(transaction=False)
    for n, cid in enumerate(ids):
        status = WorkerStatus(pid=100_000 + n, host="bench", generation=1)
        status.phase, status.messages, status.bytes = "consuming", 10_000 + n, 1_000_000 + n
        status.partitions = [f"kcm-bench-api-{n % 50}:{p}" for p in range(partitions)]
        pipe.hset(keys.heartbeat_key(cid, 0), mapping=status.fields())
        pipe.expire(keys.heartbeat_key(cid, 0), 3600)
        pipe.hset(keys.replica_state_key(cid, 0), mapping={
            "state": "RUNNING", "pid": str(100_000 + n), "generation": "1", "restarts": "0", "retries": "0",
            "backoff_delay": "0", "last_error": "", "degraded": "", "host": "bench", "supervisor_id": FAKE_SUPERVISOR,
            "updated_at": f"{now:.3f}"})
        pipe.zadd(keys.dead_letter_index(cid), {f"bench-{cid}-{i}": now + i for i in range(3)})
    pipe.execute()

    def clean():
        store.forget(ids)
        names = [name for cid in ids for name in (keys.heartbeat_key(cid, 0), keys.replica_state_key(cid, 0),
                                                   keys.dead_letter_index(cid))]
        for start in range(0, len(names), 1000):
            client.delete(*names[start:start + 1000])
        store.withdraw()
    h.cleanup.push("delete the metrics benchmark's Redis keys", clean)


def timed_get(hostport: str, path: str, headers: dict) -> tuple[float, int, bytes]:
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    started = time.perf_counter()
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return (time.perf_counter() - started) * 1000, response.status, body


def metrics_scrape(h) -> Result:
    stack = h.stack()
    consumers, partitions, scrapes = h.args.scrape_consumers, h.args.scrape_partitions, h.args.scrapes
    ids, delete_consumers = insert_consumers(h, consumers)
    fill_redis(h, ids, partitions)
    token = stack.client.json("POST", "/api-keys/", {"name": "bench-prometheus", "role": "viewer"},
                              expect=(201,))["token"]
    port = free_port()
    web = Service("metrics-web", [str(stack.api.proc.args[0]), "-c", "deploy/gunicorn.conf.py", "api:create_app()",
                                  "--bind", f"127.0.0.1:{port}", "--log-level", "warning"],
                  h.env.kcm_environ(WEB_CONCURRENCY=str(h.args.web_workers)), h.env.workdir / "logs" / "metrics-web.log")
    h.cleanup.push("stop the metrics web process", lambda: web.stop(10))
    hostport, headers = f"127.0.0.1:{port}", auth_headers(token)

    def answers() -> bool:
        if not web.alive():
            raise RuntimeError(f"the web process exited:\n{web.tail()}")
        try:
            return timed_get(hostport, "/healthz", {})[1] == 200
        except OSError:
            return False
    wait_until(answers, 30, interval=0.1, what="the web process")

    _ms, code, body = timed_get(hostport, "/metrics", headers)
    if code != 200:
        raise RuntimeError(f"GET /metrics -> {code}: {body[:300]!r}")
    series = sum(1 for line in body.decode().splitlines() if line.startswith("kcm_consumer_lag_messages{"))
    if series != consumers * partitions:
        raise RuntimeError(f"the scrape has {series} lag series, expected {consumers * partitions}")
    for _ in range(WARMUP):
        timed_get(hostport, "/metrics", headers)
        timed_get(hostport, "/healthz", {})
    metrics_ms, healthz_ms = [], []
    for _ in range(scrapes):  # alternating: a busy moment of the shared machine falls on both
        metrics_ms.append(timed_get(hostport, "/metrics", headers)[0])
        healthz_ms.append(timed_get(hostport, "/healthz", {})[0])
    web.stop(10)
    delete_consumers()

    figures = {"metrics": {"p50_ms": percentile(metrics_ms, 50), "p99_ms": percentile(metrics_ms, 99),
                           "max_ms": max(metrics_ms), "bytes": len(body), "lag_series": series},
               "healthz": {"p50_ms": percentile(healthz_ms, 50), "p99_ms": percentile(healthz_ms, 99),
                           "max_ms": max(healthz_ms)}}
    value = ratio(figures["metrics"]["p99_ms"], figures["healthz"]["p99_ms"])
    rows = [[name, fmt(f["p50_ms"], 1, "ms"), fmt(f["p99_ms"], 1, "ms"), fmt(f["max_ms"], 1, "ms")]
            for name, f in (("GET /metrics", figures["metrics"]), ("GET /healthz (floor)", figures["healthz"]))]
    rows.append(["/metrics p99 ÷ /healthz p99", fmt(value, 1), "", ""])
    return Result(
        name="metrics_scrape", title="Prometheus scrape", baseline="the same gunicorn's GET /healthz",
        params={"consumers": consumers, "partitions": partitions, "scrapes": scrapes,
                "gunicorn_workers": h.args.web_workers, "scrape_bytes": len(body)},
        columns=["request", "p50", "p99", "max"], rows=rows, figures=figures,
        runs=[{"metrics_ms": [round(v, 3) for v in metrics_ms], "healthz_ms": [round(v, 3) for v in healthz_ms]}],
        ratio=value, ratio_label="/metrics p99 ÷ /healthz p99",
        targets=[Target(label="GET /metrics p99", value=figures["metrics"]["p99_ms"], op="<", target=200,
                        unit=" ms")],
        notes=[f"{consumers} consumers x {partitions} partitions: {series} lag series, {len(body):,} bytes per scrape. "
               "The collector reads the consumer rows in one query and Redis in two pipelined round trips.",
               "deploy/gunicorn.conf.py as deployed (multiprocess HTTP metrics summed at each scrape), a viewer "
               "API key, one request per connection; the stack's supervisor reconciles the same rows meanwhile."])
