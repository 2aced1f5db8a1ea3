"""Throughput over the last minute, end to end: a real worker's heartbeat counters, sampled by the lag monitor,
shown in GET /consumers/{id}/status/ and /metrics; a worker killed and replaced (its counters back at 0) never
makes the rate negative and loses no message from the count."""
from __future__ import annotations

import os
import signal

from schema import keys
from tests.support.kafka import produce, wait_for

VALUE = b"v" * 50


def _throughput(runtime, cid: str) -> dict | None:
    import json

    raw = runtime.redis.get(keys.throughput_key(cid))
    return json.loads(raw) if raw else None


def _counted(document: dict | None) -> tuple[int, int] | None:
    """Messages and bytes the rate stands for: rate x span (exact: both come from the same counters)."""
    if document is None:
        return None
    return (round(document["messages_per_second"] * document["window_seconds"]),
            round(document["bytes_per_second"] * document["window_seconds"]))


def test_throughput_counts_what_the_workers_delivered_and_survives_a_worker_restart(runtime, monitor, client,
                                                                                   topic_factory):
    topic = topic_factory(partitions=2)
    cid, out = runtime.create_consumer(topic)
    runtime.start_supervisor()
    first_pid = runtime.worker_pid(cid)
    monitor.start()
    wait_for(lambda: _throughput(runtime, cid), timeout=30, message="a first throughput sample")
    assert _counted(_throughput(runtime, cid)) == (0, 0)

    produce(runtime.bootstrap, topic, 300, value_fn=lambda _i: VALUE)
    wait_for(lambda: len(runtime.collected(out)) >= 300, timeout=30, message="300 messages delivered")
    wait_for(lambda: _counted(_throughput(runtime, cid)) == (300, 300 * len(VALUE)), timeout=20,
             message=f"throughput of 300 messages (now {_throughput(runtime, cid)})")

    status = client.get(f"/consumers/{cid}/status/")
    assert status.status_code == 200, status.json
    throughput = status.json["throughput"]
    assert set(throughput) == {"sampled_at", "messages_per_second", "bytes_per_second", "window_seconds"}
    assert throughput["messages_per_second"] > 0 and 0 < throughput["window_seconds"] <= 61
    assert throughput["sampled_at"].endswith("+00:00")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'kcm_consumer_messages_per_second{{consumer_id="{cid}"}}' in metrics
    assert f'kcm_consumer_bytes_per_second{{consumer_id="{cid}"}}' in metrics

    # everything committed first, so the replacement redelivers nothing: the count must then be exact
    monitor.wait_lag(cid, lambda lag: lag["total_messages"] == 0, timeout=30, message="all committed")
    os.kill(first_pid, signal.SIGKILL)
    wait_for(lambda: runtime.state(cid).get("state") == "RUNNING" and runtime.state(cid).get("pid") not in (
        None, "", str(first_pid)), timeout=40, message="the worker replaced")
    produce(runtime.bootstrap, topic, 100, value_fn=lambda _i: VALUE)
    seen = []

    def counted_all():
        document = _throughput(runtime, cid)
        if document is not None:
            seen.append(document)
        return _counted(document) == (400, 400 * len(VALUE))
    wait_for(counted_all, timeout=40, interval=0.1,
             message=f"throughput of 400 messages across the restart (now {_throughput(runtime, cid)})")
    assert all(d["messages_per_second"] >= 0 and d["bytes_per_second"] >= 0 for d in seen)


def test_a_consumer_without_samples_has_no_throughput(runtime, client):
    cid = runtime.create_consumer("kcm-never-sampled", running=False)[0]
    status = client.get(f"/consumers/{cid}/status/")
    assert status.status_code == 200 and status.json["throughput"] is None
