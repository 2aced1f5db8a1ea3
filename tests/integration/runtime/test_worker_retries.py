"""A worker retrying a batch keeps its group membership (``python -m workers`` over the real Kafka and Redis).

The sink is down (the test plugin fails every batch while a flag file exists) for twice the worker's lowered
``max.poll.interval.ms``; the worker waits between retries with its partitions paused and keeps polling, so
the group never rebalances, and once the sink is back every message arrives.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient

from schema.spec import SPEC_ENV, ProcessorSpec, WorkerSpec
from tests.integration.runtime.conftest import FAST
from tests.support.kafka import committed_offsets, high_watermarks, produce, wait_for

# librdkafka requires >= session.timeout.ms (FAST's KCM_SESSION_TIMEOUT_MS, 6 s; a consumer's security may not
# change it)
MAX_POLL_INTERVAL_MS = int(FAST["KCM_SESSION_TIMEOUT_MS"])
RETRY_FOREVER = {"max_retries": 1000, "retry_backoff": 0.2, "retry_backoff_max": 1, "retry_timeout": 300}


class Worker:
    def __init__(self, proc: subprocess.Popen, spec: WorkerSpec, log_path, out, redis_url: str):
        self.proc, self.spec, self.log_path, self.out, self.redis_url = proc, spec, log_path, out, redis_url

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def retrying(self) -> bool:
        """The batch is being retried: logged once (rate-limited) and said by the heartbeat while it lasts."""
        import redis

        from schema import keys

        beat = redis.Redis.from_url(self.redis_url).hgetall(
            keys.heartbeat_key(self.spec.consumer_id, self.spec.replica))
        return "retrying in" in self.log() and beat.get(b"retrying") == b"1"

    def collected(self) -> list[tuple[int, int]]:
        if not self.out.exists():
            return []
        return [(int(p[1]), int(p[2])) for p in (line.split(b" ", 3) for line in self.out.read_bytes().splitlines())]


@pytest.fixture
def start_worker(redis_test_url, kafka_bootstrap, tmp_path):
    workers: list[Worker] = []

    def start(topic: str, group: str, flag, *, replica: int = 0) -> Worker:
        out = tmp_path / f"collected-{replica}.txt"
        spec = WorkerSpec(
            consumer_id=str(uuid.uuid4()), replica=replica, generation=1, bootstrap_servers=kafka_bootstrap,
            topic=topic, group_id=group,
            processors=(ProcessorSpec(id="p1", processor_type="test_collector", on_error="retry",
                                      config={"path": str(out), "fail_while_exists": str(flag), **RETRY_FOREVER}),))
        log_path = tmp_path / f"worker-{replica}.log"
        env = {**os.environ, **FAST, "KCM_REDIS_URL": redis_test_url, SPEC_ENV: spec.to_json(),
               "KCM_MAX_POLL_INTERVAL_MS": str(MAX_POLL_INTERVAL_MS)}
        env.pop("KCM_SUPERVISOR_PID", None)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "workers"], env=env, stdout=log, stderr=log)
        workers.append(Worker(proc, spec, log_path, out, redis_test_url))
        return workers[-1]

    yield start
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.kill()
        worker.proc.wait(5)


def _members(bootstrap: str, group: str) -> dict[str, set[int]]:
    """member id -> assigned partitions, from the group coordinator."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group])[group].result(10)
    return {m.member_id: {tp.partition for tp in m.assignment.topic_partitions} for m in description.members}


def _stable_members(bootstrap: str, group: str, count: int, partitions: int) -> dict[str, set[int]]:
    def ready():
        members = _members(bootstrap, group)
        assigned = sorted(p for parts in members.values() for p in parts)
        settled = len(members) == count and all(members.values()) and assigned == list(range(partitions))
        return members if settled else None
    return wait_for(ready, timeout=60, interval=0.2, message=f"{count} member(s) sharing {partitions} partitions")


def test_a_retry_longer_than_max_poll_interval_keeps_the_group_membership_and_loses_nothing(
        start_worker, kafka_bootstrap, topic_factory, tmp_path):
    topic, group = topic_factory(partitions=2), f"kcm-retry-{uuid.uuid4().hex[:8]}"
    produce(kafka_bootstrap, topic, 200)
    flag = tmp_path / "sink-down"
    flag.touch()
    worker = start_worker(topic, group, flag)
    members = _stable_members(kafka_bootstrap, group, 1, 2)
    wait_for(worker.retrying, timeout=30, message="the batch being retried")

    outage_ends = time.monotonic() + 2 * MAX_POLL_INTERVAL_MS / 1000
    while time.monotonic() < outage_ends:  # the sink stays down for twice max.poll.interval.ms
        assert worker.proc.poll() is None, worker.log()
        assert _members(kafka_bootstrap, group) == members, worker.log()
        time.sleep(0.5)
    produce(kafka_bootstrap, topic, 100, key_prefix="late")
    flag.unlink()

    wait_for(lambda: len(set(worker.collected())) >= 300, timeout=60, message="all 300 messages in the sink")
    assert _members(kafka_bootstrap, group) == members  # same member, same partitions: no rebalance
    log = worker.log()
    assert "PartitionsRevoked" not in log and "PartitionsLost" not in log and "MAX_POLL" not in log, log
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(15) == 0, worker.log()
    highs = high_watermarks(kafka_bootstrap, topic)
    assert {(p, o) for p, high in highs.items() for o in range(high)} == set(worker.collected())
    assert committed_offsets(kafka_bootstrap, group, topic) == highs


def test_partitions_revoked_during_the_wait_are_not_stored_and_nothing_is_lost(
        start_worker, kafka_bootstrap, topic_factory, tmp_path):
    topic, group = topic_factory(partitions=2), f"kcm-retry-{uuid.uuid4().hex[:8]}"
    for partition in (0, 1):  # the first batch then holds both partitions' messages
        produce(kafka_bootstrap, topic, 100, partition=partition, key_prefix=f"p{partition}-")
    flag = tmp_path / "sink-down"
    flag.touch()
    first = start_worker(topic, group, flag, replica=0)
    (first_member,) = _stable_members(kafka_bootstrap, group, 1, 2)
    wait_for(first.retrying, timeout=30, message="the batch being retried")

    second = start_worker(topic, group, flag, replica=1)  # joins while the first waits between retries
    members = _stable_members(kafka_bootstrap, group, 2, 2)
    assert members[first_member] and len(members[first_member]) == 1  # it kept its membership, gave one up
    wait_for(lambda: "PartitionsRevoked" in first.log(), timeout=10, message="the revocation in the log")
    flag.unlink()

    both = lambda: set(first.collected()) | set(second.collected())  # noqa: E731
    wait_for(lambda: len(both()) >= 200, timeout=60, message="every message in one of the sinks")
    for worker in (first, second):
        worker.proc.send_signal(signal.SIGTERM)
    for worker in (first, second):
        assert worker.proc.wait(15) == 0, worker.log()
    highs = high_watermarks(kafka_bootstrap, topic)
    assert both() == {(p, o) for p, high in highs.items() for o in range(high)}
    assert committed_offsets(kafka_bootstrap, group, topic) == highs
    assert "OffsetsNotStored" in first.log()  # its in-flight batch held the revoked partition's messages
