"""``python -m workers`` on its own (no supervisor): a worker spawned paused holds its partitions until the pause
key of its generation says resume, even when the notification is lost; and what the worker logs when
librdkafka takes its assignment away as lost (issue 11 item 7), here through an exceeded max.poll.interval.ms."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from schema import keys
from schema.spec import SPEC_ENV, ProcessorSpec, WorkerSpec
from tests.integration.runtime.conftest import FAST, decoded
from tests.support.kafka import produce, wait_for


@pytest.fixture
def start_worker(redis_test_url, kafka_bootstrap, tmp_path):
    procs = []

    def start(topic: str, *, paused: bool = False, processor_config: dict | None = None,
              extra_env: dict | None = None):
        out = tmp_path / f"collected-{uuid.uuid4().hex[:6]}.txt"
        log = tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log"
        spec = WorkerSpec(
            consumer_id=str(uuid.uuid4()), replica=0, generation=1, bootstrap_servers=kafka_bootstrap, topic=topic,
            group_id=f"kcm-rtp-{topic}", paused=paused,
            processors=(ProcessorSpec(id="p1", processor_type="test_collector",
                                      config={"path": str(out), **(processor_config or {})}),))
        env = {**os.environ, **FAST, "KCM_REDIS_URL": redis_test_url, SPEC_ENV: spec.to_json(), **(extra_env or {})}
        with open(log, "ab") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "workers"], env=env, stdout=fh, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc, spec, out, log

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def heartbeat(redis_client, spec) -> dict[str, str]:
    return decoded(redis_client.hgetall(keys.heartbeat_key(spec.consumer_id, spec.replica)))


def lines(path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_a_worker_spawned_paused_holds_until_its_generations_key_says_resume_without_a_notification(
        start_worker, redis_client, kafka_bootstrap, topic_factory):
    topic = topic_factory(partitions=2)
    produce(kafka_bootstrap, topic, 50)
    _proc, spec, out, _log = start_worker(topic, paused=True)
    beat = wait_for(lambda: (h := heartbeat(redis_client, spec)).get("paused") == "1"
                    and h.get("partitions", "[]") != "[]" and h, timeout=30, message="paused, holding partitions")
    assert beat["phase"] == "consuming" and json.loads(beat["partitions"])

    key = keys.pause_key(spec.consumer_id)
    redis_client.set(key, json.dumps({"paused": False, "generation": 2}))  # another generation's word: ignored
    watch_until = time.monotonic() + 1.0  # over three re-reads of the key (KCM_HEARTBEAT_INTERVAL 0.3 s)
    while time.monotonic() < watch_until:
        assert lines(out) == 0, "a worker followed another generation's pause key"
        time.sleep(0.05)
    assert heartbeat(redis_client, spec)["paused"] == "1"

    redis_client.set(key, json.dumps({"paused": False, "generation": 1}))  # no PUBLISH: the periodic re-read
    wait_for(lambda: lines(out) == 50, timeout=20, message="the 50 messages after the resume")
    wait_for(lambda: heartbeat(redis_client, spec).get("paused") == "0", timeout=5, message="paused=0")
    assert heartbeat(redis_client, spec)["assignments"] == beat["assignments"]  # resumed in place


def test_a_lost_assignment_is_logged_once_and_so_is_the_reassignment(start_worker, kafka_bootstrap, topic_factory):
    topic = topic_factory(partitions=1)
    produce(kafka_bootstrap, topic, 1)
    # a batch that takes longer than max.poll.interval.ms (its minimum: session.timeout.ms, FAST's 6 s):
    # librdkafka leaves the group and reports the assignment lost, then the worker rejoins and gets it back
    proc, _spec, _out, log = start_worker(topic, processor_config={"delay_ms": 7_000},
                                          extra_env={"KCM_MAX_POLL_INTERVAL_MS": "6000"})
    text = wait_for(lambda: "PartitionsLostRecovered" in (t := log.read_text(errors="replace")) and t, timeout=60,
                    message="the loss and the re-assignment in the worker's log")
    proc.kill()
    lost = [line for line in text.splitlines() if "PartitionsLost:" in line]
    assert len(lost) == 1 and f"partitions={topic}:0" in lost[0] and "assignment: lost" in lost[0], text
    assert sum("PartitionsLostRecovered" in line for line in text.splitlines()) == 1, text
    assert "PartitionsRevoked" not in text  # lost, not revoked: librdkafka called on_lost
