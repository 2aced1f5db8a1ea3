"""What the workers publish about their pipelines, over the real supervisor, Kafka, PostgreSQL and Redis: the status's
per-processor counters and batch latency, GET /consumers/{id}/errors/ (newest first, capped at 20, no secret),
and the processor, error and restart series of /metrics (promtool-clean)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid

from prometheus_client.parser import text_string_to_metric_families

from schema import keys
from schema.models import Consumer, DownstreamProcessor
from schema.states import DesiredState
from tests.integration.api.conftest import ADMIN_TOKEN
from tests.integration.monitoring.test_api import promtool
from tests.integration.ui.conftest import Dashboard
from tests.support.kafka import produce, wait_for

ROUNDS = 4
PER_ROUND = 10
POISON_AT, BAD_AT = 3, 7  # positions in each round: p1 fails on POISON (skip), p2 on BADMSG (dead_letter)
FAST_POLICY = {"max_retries": 1, "retry_backoff": 0.05, "retry_backoff_max": 0.05, "dead_letter_retry_intervals": [3600]}


def _two_processor_consumer(runtime, topic: str) -> tuple[str, str, str, str, list]:
    """A running consumer whose first processor skips POISON messages and second dead-letters BADMSG ones; a
    filter after them (last, so what the sinks see is unchanged) drops the first round."""
    outs = [runtime.tmp_path / f"p{n}-{uuid.uuid4().hex[:6]}.txt" for n in (1, 2)]
    with runtime.sessions() as session, session.begin():
        consumer = Consumer(bootstrap_servers=[runtime.bootstrap], topic=topic, consumer_group=f"kcm-rt-{topic}",
                            replicas=1, auto_offset_reset="earliest", desired_state=DesiredState.RUNNING, generation=1)
        for position, (fail_on, on_error, out) in enumerate((("POISON", "skip", outs[0]),
                                                             ("BADMSG", "dead_letter", outs[1]))):
            consumer.downstream_processors.append(DownstreamProcessor(
                processor_type="test_collector", on_error=on_error, position=position,
                config={"path": str(out), "fail_on": fail_on, **FAST_POLICY}))
        consumer.downstream_processors.append(DownstreamProcessor(
            processor_type="filter", on_error="retry", position=2, config={"condition": f"offset >= {PER_ROUND}"}))
        session.add(consumer)
        session.flush()
        cid, p1, p2, p3 = str(consumer.id), *(str(p.id) for p in consumer.downstream_processors)
    runtime.command(cid, "create")
    return cid, p1, p2, p3, outs


def _value(i: int) -> bytes:
    return {POISON_AT: b"POISON-%d", BAD_AT: b"BADMSG-%d"}.get(i % PER_ROUND, b"fine-%d") % i


def _samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _dashboard_processors(app, cid: str) -> dict[str, dict[str, str]]:
    """The consumer page's processors table as shown: per position, each column's text."""
    board = Dashboard(app)
    assert board.sign_in(ADMIN_TOKEN).status_code == 303
    page = board.get(f"/consumers/{cid}/live")
    assert page.status_code == 200
    table = page.get_data(as_text=True).split('id="processors"', 1)[1].split("</table>", 1)[0]
    columns = re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', table)
    return {position: dict(zip(columns[1:], (re.sub(r"<[^>]+>", "", c).strip()
                                             for c in re.findall(r"<td[^>]*>(.*?)</td>", cells, re.S)), strict=True))
            for position, cells in re.findall(r'<th scope="row">(\d+)</th>(.*?)</tr>', table, re.S)}


def test_status_errors_and_metrics_count_what_a_sometimes_failing_pipeline_did(runtime, app, client, topic_factory):
    topic = topic_factory(partitions=1)
    cid, p1, p2, p3, (out1, out2) = _two_processor_consumer(runtime, topic)
    runtime.start_supervisor()
    first_pid = runtime.worker_pid(cid)
    for done in range(1, ROUNDS + 1):  # one round at a time: exactly one batch per round holds each failure
        produce(runtime.bootstrap, topic, PER_ROUND, value_fn=lambda i, base=(done - 1) * PER_ROUND: _value(base + i))
        wait_for(lambda n=done: len(runtime.collected(out1)) == n * 9 and len(runtime.collected(out2)) == n * 9,
                 timeout=40, message=f"round {done} delivered (log {runtime.supervisor_log()[-600:]!r})")
    assert {o for _p, o in runtime.collected(out1)} == {i for i in range(ROUNDS * PER_ROUND) if i % 10 != POISON_AT}

    def published():
        replica = client.get(f"/consumers/{cid}/status/").json["replicas"][0]
        figures = {p["processor_id"]: p for p in replica["processors"] or ()}
        done = figures.get(p2, {}).get("dead_lettered") == ROUNDS and figures.get(p3, {}).get("dropped") == PER_ROUND
        return figures if done else None

    figures = wait_for(published, timeout=20, message="the counters in the status")
    first, second = figures[p1], figures[p2]
    assert (first["processor_type"], first["retries"], first["skipped"], first["dead_lettered"]) == \
        ("test_collector", ROUNDS, ROUNDS, 0)
    assert (second["retries"], second["skipped"], second["dead_lettered"]) == (ROUNDS, 0, ROUNDS)
    assert first["batches"] == second["batches"] >= ROUNDS
    assert (first["dropped"], second["dropped"]) == (0, 0)  # a sink drops nothing
    assert (figures[p3]["processor_type"], figures[p3]["dropped"], figures[p3]["skipped"]) == ("filter", PER_ROUND, 0)
    shown = _dashboard_processors(app, cid)
    assert (shown["2"]["Type"], shown["2"]["Dropped"], shown["0"]["Dropped"]) == ("filter", str(PER_ROUND), "0")
    for figure in (first, second):
        assert 0 < figure["batch_latency_p50_seconds"] <= figure["batch_latency_p99_seconds"]
    assert runtime.redis.zcard(keys.dead_letter_index(cid)) == ROUNDS

    errors = client.get(f"/consumers/{cid}/errors/")
    assert errors.status_code == 200, errors.json
    listed = errors.json
    assert len(listed) == 20  # 6 per round (retry, batch_failed, skipped|dead_lettered per processor), capped
    assert [e["time"] for e in listed] == sorted((e["time"] for e in listed), reverse=True)
    assert all(e["replica"] == 0 and e["time"].endswith("+00:00") for e in listed)
    newest = listed[:6]  # the last round's
    base = (ROUNDS - 1) * PER_ROUND
    assert sorted((e["processor"], e["kind"]) for e in newest) == sorted(
        [(p1, "retry"), (p1, "batch_failed"), (p1, "skipped"), (p2, "retry"), (p2, "batch_failed"),
         (p2, "dead_lettered")])
    skipped = next(e for e in newest if e["kind"] == "skipped")
    assert f"{topic}/0@{base + POISON_AT}" in skipped["message"]
    dead = next(e for e in newest if e["kind"] == "dead_lettered")
    assert f"{topic}/0@{base + BAD_AT}" in dead["message"]
    assert not any(b"POISON-" in e["message"].encode() or "BADMSG-" in e["message"] for e in listed)  # no payload

    text = client.get("/metrics").get_data(as_text=True)
    checked = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    samples = _samples(text)

    def value(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))))

    for pid, figure in ((p1, first), (p2, second)):
        labels = {"consumer_id": cid, "processor": pid}
        assert value("kcm_processor_batches_total", **labels) >= figure["batches"]
        batches = value("kcm_processor_batches_total", **labels)
        assert value("kcm_processor_batch_duration_seconds_count", **labels) == batches
        assert value("kcm_processor_batch_duration_seconds_bucket", **labels, le="+Inf") == batches
        assert value("kcm_processor_batch_duration_seconds_bucket", **labels, le="0.001") <= batches
        assert value("kcm_processor_batch_duration_seconds_sum", **labels) > 0
        assert value("kcm_processor_retries_total", **labels) == ROUNDS
    assert value("kcm_processor_skipped_total", consumer_id=cid, processor=p1) == ROUNDS
    assert value("kcm_processor_dead_lettered_total", consumer_id=cid, processor=p2) == ROUNDS
    assert value("kcm_processor_dead_lettered_total", consumer_id=cid, processor=p1) == 0
    assert value("kcm_processor_dropped_total", consumer_id=cid, processor=p3) == PER_ROUND
    assert value("kcm_processor_dropped_total", consumer_id=cid, processor=p1) == 0
    assert value("kcm_consumer_errors_total", consumer_id=cid, replica="0") == float(runtime.heartbeat(cid)["errors"])
    assert value("kcm_replica_restarts_total", consumer_id=cid, replica="0") == 0

    os.kill(first_pid, signal.SIGKILL)  # the supervisor restarts it and counts the restart
    wait_for(lambda: (s := runtime.state(cid)).get("state") == "RUNNING" and s.get("pid") != str(first_pid),
             timeout=40, message="the replacement worker RUNNING")
    restarted = wait_for(lambda: (_samples(client.get("/metrics").get_data(as_text=True)).get(
        ("kcm_replica_restarts_total", (("consumer_id", cid), ("replica", "0")))) or None), timeout=20,
        message="the restart counted in /metrics")
    assert restarted == 1
    assert client.get(f"/consumers/{cid}/status/").json["replicas"][0]["restarts"] == 1


def test_a_kafka_error_and_the_fatal_exit_are_listed_without_the_secret(runtime, client, topic_factory):
    topic = topic_factory(partitions=1)
    cid, _out = runtime.create_consumer(topic, security={
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "kcm",
        "sasl.password": "${env:KCM_SECRET_H11_KAFKA_PASSWORD}"})
    runtime.start_supervisor(KCM_SECRET_H11_KAFKA_PASSWORD="pw-h11-7d2e-never-shown")
    runtime.wait_state(cid, "FATAL")

    def listed():
        entries = client.get(f"/consumers/{cid}/errors/").json
        return entries if {"kafka", "exit"} <= {e["kind"] for e in entries} else None

    entries = wait_for(listed, timeout=20, message="the Kafka error and the exit listed")
    assert entries[0]["kind"] == "exit" and "KafkaAuthenticationFailed" in entries[0]["message"]
    assert entries[0]["processor"] is None
    raw = client.get(f"/consumers/{cid}/errors/").get_data(as_text=True)
    stored = runtime.redis.lrange(keys.replica_errors_key(cid, 0), 0, -1)
    assert "pw-h11-7d2e-never-shown" not in raw + str(stored)
    assert 0 < runtime.redis.ttl(keys.replica_errors_key(cid, 0)) <= keys.REPLICA_ERRORS_TTL


def test_the_errors_of_a_missing_consumer_are_404_and_a_consumer_without_errors_lists_none(client, runtime,
                                                                                          topic_factory):
    missing = client.get(f"/consumers/{uuid.uuid4()}/errors/")
    assert missing.status_code == 404 and set(missing.json) == {"code", "status", "message", "errors"}
    cid, _out = runtime.create_consumer(topic_factory(partitions=1), running=False)
    assert client.get(f"/consumers/{cid}/errors").json == []
