"""The lag monitor against the real Kafka: lag in messages is the watermarks' truth, lag in seconds the age of
the oldest unconsumed message, measured while no worker runs, and both fall to 0 once the consumer runs."""
from __future__ import annotations

import time

from schema import keys
from schema.states import DesiredState
from tests.integration.monitoring.conftest import commit, now_ms, produce_at
from tests.support.kafka import high_watermarks, wait_for


def _partitions(lag: dict) -> dict[int, dict]:
    return {p["partition"]: p for p in lag["partitions"]}


def test_a_stopped_consumers_lag_is_measured_in_messages_and_seconds_then_falls_to_zero_when_it_runs(
        runtime, monitor, topic_factory, kafka_bootstrap):
    topic = topic_factory(partitions=3)
    base = now_ms()
    produce_at(kafka_bootstrap, topic, 0, [base - 120_000 + i * 1000 for i in range(5)])  # 120 s .. 116 s old
    produce_at(kafka_bootstrap, topic, 1, [base - 30_000] * 3)
    cid, _out = runtime.create_consumer(topic, running=False)
    group = f"kcm-rt-{topic}"
    commit(kafka_bootstrap, group, topic, {0: 2})  # two of partition 0's five messages were consumed earlier
    monitor.start()

    lag = monitor.wait_lag(cid, lambda lag: lag["partitions"] and all(
        p["lag_seconds"] is not None for p in lag["partitions"]), message="lag with seconds")
    truth = time.time()
    highs = high_watermarks(kafka_bootstrap, topic)
    parts = _partitions(lag)
    assert {p: parts[p]["high_watermark"] for p in parts} == highs == {0: 5, 1: 3, 2: 0}
    assert parts[0]["committed"] == 2 and parts[0]["lag_messages"] == 3
    assert parts[1]["committed"] is None and parts[1]["lag_messages"] == 3  # never committed, earliest: all of it
    assert parts[2]["lag_messages"] == 0 and parts[2]["lag_seconds"] == 0
    assert lag["total_messages"] == 6
    # the oldest unconsumed message of partition 0 is offset 2, produced at base - 118 s
    age_at_sample = lambda ts_ms: lag["sampled_at"] - ts_ms / 1000  # noqa: E731
    assert abs(parts[0]["lag_seconds"] - age_at_sample(base - 118_000)) < 2
    assert abs(parts[1]["lag_seconds"] - age_at_sample(base - 30_000)) < 2
    assert abs(lag["max_seconds"] - parts[0]["lag_seconds"]) < 0.01
    assert truth - lag["sampled_at"] < 30
    assert monitor.health(cid)["verdict"] == "STOPPED"

    runtime.change(cid, desired_state=DesiredState.RUNNING, command="start")
    runtime.start_supervisor()
    lag = monitor.wait_lag(cid, lambda lag: lag["total_messages"] == 0 and lag["max_seconds"] == 0,
                           timeout=60, message="lag back to 0")
    assert all(p["lag_messages"] == 0 and p["lag_seconds"] == 0 for p in lag["partitions"])
    assert {p["partition"]: p["committed"] for p in lag["partitions"]}[0] == 5
    monitor.wait_verdict(cid, "OK", timeout=30)


def test_a_consumer_that_should_run_but_nothing_consumes_is_stop_then_err(runtime, monitor, topic_factory,
                                                                            kafka_bootstrap):
    topic = topic_factory(partitions=1)
    produce_at(kafka_bootstrap, topic, 0, [now_ms()] * 4)
    cid = runtime.create_consumer(topic, running=True)[0]  # desired running, but no supervisor runs it
    commit(kafka_bootstrap, f"kcm-rt-{topic}", topic, {0: 1})
    monitor.start()
    health = monitor.wait_verdict(cid, "ERR")
    assert health["partitions"]["0"]["verdict"] == "STOP"
    assert "partition 0 is STOP" in health["reason"] and "no live worker" in health["reason"]
    assert _partitions(monitor.lag(cid))[0]["verdict"] == "STOP"


def test_a_committed_offset_that_goes_back_is_rewind(runtime, monitor, topic_factory, kafka_bootstrap):
    topic = topic_factory(partitions=1)
    produce_at(kafka_bootstrap, topic, 0, [now_ms()] * 10)
    cid = runtime.create_consumer(topic, running=True)[0]
    group = f"kcm-rt-{topic}"
    commit(kafka_bootstrap, group, topic, {0: 8})
    monitor.start()
    monitor.wait_lag(cid, lambda lag: _partitions(lag)[0]["committed"] == 8, message="committed 8")
    commit(kafka_bootstrap, group, topic, {0: 3})
    health = monitor.wait_verdict(cid, "ERR")
    assert health["partitions"]["0"]["verdict"] == "REWIND"
    assert "went back from 8 to 3" in health["reason"]


def test_a_worker_that_holds_its_partition_but_never_commits_is_stall(runtime, monitor, topic_factory,
                                                                     kafka_bootstrap, tmp_path):
    topic = topic_factory(partitions=1)
    blocker = tmp_path / "sink-down"
    blocker.write_text("down")  # every batch raises a retriable error while this file exists
    produce_at(kafka_bootstrap, topic, 0, [now_ms()] * 5)
    cid = runtime.create_consumer(topic, running=True, processor_config={"fail_while_exists": str(blocker)})[0]
    runtime.start_supervisor()
    runtime.wait_state(cid, "RUNNING")
    monitor.start()
    health = monitor.wait_verdict(cid, "ERR", timeout=60)
    assert health["partitions"]["0"]["verdict"] == "STALL", health
    assert "a live worker holds the partition" in health["reason"]
    blocker.unlink()  # the sink is back: the worker delivers, commits, and the verdict heals
    monitor.wait_verdict(cid, "OK", timeout=60)
    assert monitor.lag(cid)["total_messages"] == 0


def test_a_deleted_consumers_keys_disappear_and_the_monitor_withdraws_on_sigterm(runtime, monitor, topic_factory,
                                                                               kafka_bootstrap):
    import uuid

    from schema.models import Consumer

    topic = topic_factory(partitions=1)
    cid = runtime.create_consumer(topic, running=False)[0]
    proc = monitor.start()
    monitor.wait_lag(cid, lambda lag: True)
    assert runtime.redis.exists(keys.LAG_MONITOR_KEY)
    with runtime.sessions() as session, session.begin():
        session.delete(session.get(Consumer, uuid.UUID(cid)))
    wait_for(lambda: not runtime.redis.exists(keys.lag_key(cid), keys.health_key(cid), keys.lag_window_key(cid)),
             timeout=20, message="the deleted consumer's lag keys gone")
    monitor.stop()
    assert proc.returncode == 0, monitor.log()
    assert not runtime.redis.exists(keys.LAG_MONITOR_KEY)
    assert '"event": "LagMonitorStopped"' in monitor.log()
