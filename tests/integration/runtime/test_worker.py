"""``python -m workers`` on its own (no supervisor): signals, secrets, a missing topic."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import pytest

from schema import keys
from schema.exits import EXIT_CONFIG, EXIT_LEASE_HELD
from schema.spec import SPEC_ENV, ProcessorSpec, WorkerSpec
from tests.integration.runtime.conftest import FAST, decoded
from tests.support.kafka import committed_offsets, produce, wait_for


@pytest.fixture
def start_worker(redis_client, redis_test_url, kafka_bootstrap, tmp_path):
    procs = []

    def start(topic: str, *, processor_config: dict | None = None, security: dict | None = None,
              extra_env: dict | None = None):
        out = tmp_path / f"collected-{uuid.uuid4().hex[:6]}.txt"
        spec = WorkerSpec(
            consumer_id=str(uuid.uuid4()), replica=0, generation=1, bootstrap_servers=kafka_bootstrap, topic=topic,
            group_id=f"kcm-rtw-{topic}", security=security or {},
            processors=(ProcessorSpec(id="p1", processor_type="test_collector",
                                      config={"path": str(out), **(processor_config or {})}),))
        env = {**__import__("os").environ, **FAST, "KCM_REDIS_URL": redis_test_url, SPEC_ENV: spec.to_json(),
               **(extra_env or {})}
        proc = subprocess.Popen([sys.executable, "-m", "workers"], env=env, stderr=subprocess.PIPE)
        procs.append(proc)
        return proc, spec, out

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def heartbeat(redis_client, spec) -> dict[str, str]:
    return decoded(redis_client.hgetall(keys.heartbeat_key(spec.consumer_id, spec.replica)))


def lines(path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [(int(p[1]), int(p[2])) for p in (line.split(b" ", 3) for line in path.read_bytes().splitlines())]


def test_missing_topic_shows_as_last_error_within_seconds_and_worker_keeps_polling(
        start_worker, redis_client, kafka_bootstrap):
    proc, spec, _out = start_worker(f"kcm-absent-{uuid.uuid4().hex[:8]}")
    hb = wait_for(lambda: (h := heartbeat(redis_client, spec)).get("last_error") and h, timeout=10,
                  message="TopicNotFound in the heartbeat")
    assert "TopicNotFound" in hb["last_error"] and spec.topic in hb["last_error"]
    time.sleep(1)
    assert proc.poll() is None  # not fatal: the topic may be created later


def test_sigterm_finishes_the_batch_commits_what_was_delivered_and_exits_0(start_worker, redis_client,
                                                                          kafka_bootstrap, topic_factory):
    topic = topic_factory(partitions=2)
    produce(kafka_bootstrap, topic, 3000)
    proc, spec, out = start_worker(topic, processor_config={"delay_ms": 150})
    wait_for(lambda: len(lines(out)) >= 500, timeout=20, message="consumption under way")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    delivered = {}
    for partition, offset in lines(out):
        delivered[partition] = max(delivered.get(partition, -1), offset + 1)
    committed = committed_offsets(kafka_bootstrap, spec.group_id, topic)
    assert {p: o for p, o in committed.items() if o >= 0} == delivered
    assert not redis_client.exists(keys.lease_key(spec.consumer_id, 0))  # released on the way out
    assert heartbeat(redis_client, spec) == {}  # a clean exit leaves no heartbeat: alive means the key exists


def test_second_sigterm_exits_at_once_without_committing(start_worker, redis_client, kafka_bootstrap,
                                                          topic_factory):
    topic = topic_factory(partitions=1)
    produce(kafka_bootstrap, topic, 100)
    proc, spec, out = start_worker(topic, processor_config={"delay_ms": 5000})
    wait_for(lambda: heartbeat(redis_client, spec).get("partitions", "[]") != "[]", timeout=15,
             message="partition assigned")
    time.sleep(1)  # the first batch is now inside the (5 s) processor
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(3) == 143
    assert lines(out) == []  # the batch never flushed
    assert committed_offsets(kafka_bootstrap, spec.group_id, topic) in ({0: -1001}, {0: -1})


def test_missing_secret_reference_exits_78_and_no_secret_is_written(start_worker, redis_client, topic_factory):
    topic = topic_factory(partitions=1)
    proc, spec, _out = start_worker(topic, security={
        "sasl.username": "${env:KCM_SECRET_TEST_KAFKA_USER}", "sasl.password": "${env:KCM_SECRET_TEST_KAFKA_PASSWORD_UNSET}"},
        extra_env={"KCM_SECRET_TEST_KAFKA_USER": "s3cr3t-user-value"})
    assert proc.wait(20) == EXIT_CONFIG
    stderr = proc.stderr.read()
    hb = heartbeat(redis_client, spec)
    assert hb["phase"] == "exited"  # a failed exit leaves its reason for the supervisor
    assert "ConsumerConfigError" in hb["last_error"] and "KCM_SECRET_TEST_KAFKA_PASSWORD_UNSET" in hb["last_error"]
    assert b"s3cr3t-user-value" not in stderr and "s3cr3t-user-value" not in str(hb)


def test_worker_that_loses_its_lease_to_another_process_exits_at_once(start_worker, redis_client, topic_factory):
    topic = topic_factory(partitions=1)
    proc, spec, _out = start_worker(topic)
    lease = keys.lease_key(spec.consumer_id, 0)
    wait_for(lambda: heartbeat(redis_client, spec).get("phase") == "consuming", timeout=15, message="consuming")
    assert redis_client.get(lease).startswith(f"{proc.pid}@".encode())
    redis_client.set(lease, b"99999@elsewhere:token", px=60_000)  # as if we had been frozen past the TTL
    assert proc.wait(5) == EXIT_LEASE_HELD
    assert redis_client.get(lease) == b"99999@elsewhere:token"  # never deletes a lease it does not hold


def test_sigterm_during_retries_of_a_failing_batch_exits_0_without_committing_it(
        start_worker, redis_client, kafka_bootstrap, topic_factory):
    topic = topic_factory(partitions=1)
    produce(kafka_bootstrap, topic, 5, value_fn=lambda i: b"poison" if i == 2 else b"ok-%d" % i)
    proc, spec, out = start_worker(topic, processor_config={
        "fail_on": "poison", "max_retries": 100, "retry_backoff": 5, "retry_timeout": 600})
    wait_for(lambda: heartbeat(redis_client, spec).get("partitions", "[]") != "[]", timeout=15,
             message="partition assigned")
    time.sleep(1)  # the batch has failed once and the pipeline waits 5 s before its retry
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    assert lines(out) == []
    assert committed_offsets(kafka_bootstrap, spec.group_id, topic)[0] < 0  # nothing committed
