"""Regressions of the bad-day report (issue 11): a Redis restart, a start while Redis is down, a crash that must
show, and a crash loop that must still move its offsets. Faults that stop Redis use a PRIVATE redis-server."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from schema.spec import SPEC_ENV, ProcessorSpec, WorkerSpec
from schema.states import ConsumerStatus
from tests.chaos.services import PrivateRedis
from tests.integration.runtime.conftest import Runtime
from tests.support.kafka import committed_offsets, produce, wait_for


@pytest.fixture
def private_runtime(pg_url, pg_engine, pg_clean, kafka_bootstrap, tmp_path, runtime):
    """The runtime fixture's supervisor, but over a private Redis the test may stop."""
    service = PrivateRedis().start()
    client = redis.Redis.from_url(service.url)
    rt = Runtime(pg_engine=pg_engine, redis_client=client, kafka_bootstrap=kafka_bootstrap, tmp_path=tmp_path,
                 env={**runtime.env, "KCM_REDIS_URL": service.url})
    try:
        yield rt, service
    finally:
        rt.cleanup()
        service.close()


def test_redis_restart_does_not_kill_healthy_workers(private_runtime, topic_factory):
    rt, service = private_runtime
    topic = topic_factory(partitions=2)
    cid, out = rt.create_consumer(topic)
    rt.start_supervisor()
    pid = rt.worker_pid(cid)
    for outage in (5, 2):
        service.stop()
        time.sleep(outage)
        service.start()
        time.sleep(8)  # longer than the liveness span: a kill would have happened by now
        assert rt.worker_pids() == [pid], f"the worker was replaced after a {outage} s Redis outage"
    state = rt.wait_state(cid, "RUNNING")
    assert state["pid"] == str(pid) and "hung worker" not in rt.supervisor_log()
    produce(rt.bootstrap, topic, 50)
    wait_for(lambda: len(rt.collected(out)) >= 50, timeout=20, message="still consuming after the outages")


def test_worker_due_while_redis_is_down_waits_and_starts_without_going_fatal(private_runtime, topic_factory):
    rt, service = private_runtime
    topic = topic_factory(partitions=1)
    cid, out = rt.create_consumer(topic)
    service.stop()
    rt.start_supervisor()
    time.sleep(15)  # four failed starts (startretries 2) would have made it FATAL long before
    service.start()
    state = rt.wait_state(cid, "RUNNING", timeout=30)
    assert state["retries"] == "0"
    wait_for(lambda: rt.consumer(cid).status == ConsumerStatus.ACTIVE, timeout=20, message="ACTIVE once it runs")
    produce(rt.bootstrap, topic, 20)
    wait_for(lambda: len(rt.collected(out)) >= 20, timeout=20, message="consuming once Redis is back")
    log = rt.supervisor_log()
    assert "WAITING" in log and "FATAL" not in log
    assert log.count("RedisUnavailable") < 40, "the outage is logged rate-limited"


def test_kill_of_a_long_running_worker_shows_error_with_the_reason_never_inactive(runtime, topic_factory):
    topic = topic_factory(partitions=1)
    cid, _out = runtime.create_consumer(topic)
    runtime.start_supervisor()
    pid = runtime.worker_pid(cid)
    wait_for(lambda: runtime.consumer(cid).status == ConsumerStatus.ACTIVE, timeout=20, message="ACTIVE")
    time.sleep(11)  # longer than stable_secs (10 s): the old code restarted it as if nothing happened
    os.kill(pid, signal.SIGKILL)
    seen, errors = [], []

    def back_to_active():
        seen.append(runtime.consumer(cid).status)
        errors.append(runtime.state(cid).get("last_error", ""))
        return len(seen) > 5 and seen[-1] == ConsumerStatus.ACTIVE and runtime.state(cid).get("pid") != str(pid)

    wait_for(back_to_active, timeout=40, interval=0.05, message="ACTIVE again after the clean run")
    after_kill = seen[next(i for i, s in enumerate(seen) if s != ConsumerStatus.ACTIVE):]
    assert ConsumerStatus.INACTIVE not in after_kill, f"status flapped: {after_kill}"
    assert ConsumerStatus.ERROR in after_kill
    assert any("killed by SIGKILL" in e for e in errors), "the reason of the crash was shown while it recovered"


def test_a_worker_killed_right_after_its_first_batch_has_committed_it(kafka_bootstrap, topic_factory, redis_test_url,
                                                                        tmp_path):
    """A 60 s commit interval: only the commit after the first batch following the assignment can have moved
    the offsets before a kill -9 that comes at once (a crash loop that never commits re-reads forever)."""
    topic = topic_factory(partitions=1)
    produce(kafka_bootstrap, topic, 3000)
    out = tmp_path / "collected.txt"
    spec = WorkerSpec(consumer_id="c-commit-first", replica=0, generation=1, bootstrap_servers=kafka_bootstrap,
                      topic=topic, group_id=f"kcm-first-commit-{topic}",
                      processors=(ProcessorSpec(id="c", processor_type="test_collector", config={"path": str(out)}),))
    env = {**os.environ, SPEC_ENV: spec.to_json(), "KCM_REDIS_URL": redis_test_url, "KCM_FILE_SINK_ROOT": str(tmp_path),
           "KCM_COMMIT_INTERVAL_MS": "60000", "KCM_BATCH_SIZE": "500", "KCM_HEARTBEAT_INTERVAL": "0.3"}
    env.pop("KCM_SUPERVISOR_PID", None)
    with open(tmp_path / "worker.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "workers"], env=env, stdout=log, stderr=log)
    try:
        wait_for(lambda: out.exists() and out.stat().st_size > 0, timeout=30, interval=0.01, message="first batch")
        time.sleep(0.3)  # the synchronous commit right after the first batch's store
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    committed = committed_offsets(kafka_bootstrap, spec.group_id, topic)[0]
    assert committed >= 500, f"nothing committed before the kill (committed={committed})"
