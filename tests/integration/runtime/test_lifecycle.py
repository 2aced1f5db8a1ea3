"""A consumer's life under the real supervisor: start, consume, stop, crash, restart."""
from __future__ import annotations

import os
import signal
import time

from schema import keys
from schema.states import ConsumerStatus, DesiredState
from tests.integration.runtime.conftest import decoded, pid_alive
from tests.support.kafka import committed_offsets, high_watermarks, produce, wait_for


def test_start_consume_10000_then_stop_commits_high_watermarks(runtime, topic_factory):
    topic = topic_factory(partitions=3)
    cid, out = runtime.create_consumer(topic)
    runtime.start_supervisor()

    state = runtime.wait_state(cid, "RUNNING")
    supervisor_id = runtime.env["KCM_SUPERVISOR_ID"]
    assert state["supervisor_id"] == supervisor_id and state["generation"] == "1"
    supervisor_beat = decoded(runtime.redis.hgetall(keys.supervisor_key(supervisor_id)))
    assert supervisor_beat["pid"] == str(runtime.supervisors[0].pid) and runtime.redis.ttl(
        keys.supervisor_key(supervisor_id)) > 0
    assert runtime.redis.sismember(keys.SUPERVISORS_INDEX, supervisor_id)
    produce(runtime.bootstrap, topic, 10_000)
    wait_for(lambda: len(set(runtime.collected(out))) >= 10_000, timeout=30, message="10,000 messages collected")

    pid = int(state["pid"])
    heartbeat = runtime.heartbeat(cid)
    assert heartbeat["pid"] == str(pid) and heartbeat["host"] == state["host"]
    assert float(heartbeat["last_heartbeat"]) > time.time() - 5
    wait_for(lambda: runtime.heartbeat(cid).get("messages") == "10000", timeout=10, message="heartbeat counters")
    wait_for(lambda: runtime.consumer(cid).status == ConsumerStatus.ACTIVE, timeout=10, message="status ACTIVE")

    runtime.change(cid, desired_state=DesiredState.STOPPED, bump=False, command="stop")
    runtime.wait_state(cid, "STOPPED")
    wait_for(lambda: not pid_alive(pid), timeout=5, message="worker process gone")
    wait_for(lambda: runtime.consumer(cid).status == ConsumerStatus.INACTIVE, timeout=10, message="INACTIVE")
    assert committed_offsets(runtime.bootstrap, f"kcm-rt-{topic}", topic) == high_watermarks(runtime.bootstrap, topic)
    assert sorted(set(runtime.collected(out))) == sorted(
        (p, o) for p, high in high_watermarks(runtime.bootstrap, topic).items() for o in range(high))


def test_kill_9_mid_stream_restarts_and_loses_no_offset(runtime, topic_factory):
    topic = topic_factory(partitions=2)
    # slow the sink down so the kill lands mid-stream
    cid, out = runtime.create_consumer(topic, processor_config={"delay_ms": 20})
    runtime.start_supervisor()
    first_pid = runtime.worker_pid(cid)
    produce(runtime.bootstrap, topic, 6_000)
    wait_for(lambda: len(runtime.collected(out)) >= 1_000, timeout=20, message="consumption under way")

    os.kill(first_pid, signal.SIGKILL)
    restarted = wait_for(lambda: (s := runtime.state(cid)).get("state") == "RUNNING" and s.get("pid") != str(
        first_pid) and s, timeout=20, message="a new worker RUNNING")
    assert int(restarted["restarts"]) >= 1
    wait_for(lambda: len(set(runtime.collected(out))) >= 6_000, timeout=30, message="all 6,000 collected")

    highs = high_watermarks(runtime.bootstrap, topic)
    collected = set(runtime.collected(out))
    for partition, high in highs.items():
        offsets = sorted(o for p, o in collected if p == partition)
        assert offsets == list(range(high)), f"partition {partition} has a gap"
    assert "SIGKILL" in runtime.supervisor_log()


def test_config_error_exit_78_goes_fatal_at_once(runtime, topic_factory):
    topic = topic_factory(partitions=1)
    cid, _out = runtime.create_consumer(topic, processor_config={"fail_open": True})
    runtime.start_supervisor()
    state = runtime.wait_state(cid, "FATAL")
    assert "configuration error" in state["last_error"] and "fail_open" in state["last_error"]
    assert state["retries"] == "0"  # no retries for a configuration error
    wait_for(lambda: runtime.consumer(cid).status == ConsumerStatus.ERROR, timeout=10, message="status ERROR")


def test_batch_that_keeps_failing_restarts_the_worker_and_never_commits_past_it(runtime, topic_factory):
    topic = topic_factory(partitions=1)
    cid, out = runtime.create_consumer(topic, processor_config={"fail_on": "poison", "max_retries": 0})
    runtime.start_supervisor()
    runtime.wait_state(cid, "RUNNING")
    produce(runtime.bootstrap, topic, 10, value_fn=lambda i: b"ok-%d" % i)
    wait_for(lambda: len(runtime.collected(out)) >= 10, timeout=20, message="offsets 0-9 collected")
    produce(runtime.bootstrap, topic, 10, value_fn=lambda i: b"poison" if i == 0 else b"after-%d" % i)

    # while it runs the worker's own reason shows; once reaped, with the exit code in front
    state = wait_for(lambda: "exit code 70" in (s := runtime.state(cid)).get("last_error", "") and s, timeout=20,
                     message="the delivery failure in last_error")
    assert "DeliveryFailed: RetriableError: poison message at" in state["last_error"]
    wait_for(lambda: int(runtime.state(cid).get("restarts", "0")) >= 2, timeout=20, message="restarted")
    assert committed_offsets(runtime.bootstrap, f"kcm-rt-{topic}", topic) == {0: 10}  # up to, not past, it
    assert {offset for _p, offset in runtime.collected(out)} == set(range(10))
