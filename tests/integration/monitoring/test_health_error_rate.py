"""The processor error-rate WARN end to end: a real worker whose sink goes down (every batch raises a RetriableError,
on_error=skip) while a real producer keeps writing reads WARN in the status endpoint and /metrics, naming the
processor, its error rate and the setting; once the sink is back it reads OK again, traffic still flowing."""
from __future__ import annotations

import re
import uuid

from schema.models import Consumer, DownstreamProcessor
from schema.states import DesiredState
from tests.integration.monitoring.test_health_warn import SteadyProducer
from tests.support.kafka import wait_for

FAST_POLICY = {"max_retries": 1, "retry_backoff": 0.05, "retry_backoff_max": 0.05}
ERROR_RATE = {"KCM_HEALTH_ERROR_RATE_WARN": "1"}  # errors per second over the monitor's 4 x 0.5 s window


def _consumer_with_a_sink_that_can_go_down(runtime, topic: str):
    """A running consumer whose processor fails every batch while ``down`` exists, skipping what it cannot write."""
    out, down = runtime.tmp_path / f"out-{uuid.uuid4().hex[:6]}.txt", runtime.tmp_path / "sink-down"
    with runtime.sessions() as session, session.begin():
        consumer = Consumer(bootstrap_servers=[runtime.bootstrap], topic=topic, consumer_group=f"kcm-rt-{topic}",
                            replicas=1, auto_offset_reset="earliest", desired_state=DesiredState.RUNNING, generation=1)
        consumer.downstream_processors.append(DownstreamProcessor(
            processor_type="test_collector", on_error="skip", position=0,
            config={"path": str(out), "fail_while_exists": str(down), **FAST_POLICY}))
        session.add(consumer)
        session.flush()
        cid, processor_id = str(consumer.id), str(consumer.downstream_processors[0].id)
    runtime.command(cid, "create")
    return cid, processor_id, out, down


def test_a_processor_failing_faster_than_the_threshold_is_warn_naming_it_then_ok_once_it_recovers(
        runtime, monitor, client, topic_factory, kafka_bootstrap):
    topic = topic_factory(partitions=1)
    cid, processor_id, out, down = _consumer_with_a_sink_that_can_go_down(runtime, topic)
    runtime.start_supervisor()
    runtime.wait_state(cid, "RUNNING")
    monitor.start(**ERROR_RATE)
    producer = SteadyProducer(kafka_bootstrap, topic)
    producer.start()

    def health_is(verdict: str, naming: str = ""):
        health = client.get(f"/consumers/{cid}/status/").json["health"]
        return health if health["verdict"] == verdict and naming in health["reason"] else None

    try:
        health = wait_for(lambda: health_is("OK"), timeout=40, interval=0.2,
                          message=f"OK while the sink works (now {monitor.health(cid)}; log {monitor.log()[-600:]!r})")
        assert health["reason"] == "every partition is OK"

        down.touch()  # the sink goes down: every batch fails, is retried once, then its messages are skipped
        # (the lag-trend WARN may come and go meanwhile: the sink skips slower than it writes)
        health = wait_for(lambda: health_is("WARN", f"processor {processor_id} "), timeout=40, interval=0.2,
                          message=f"WARN for the errors (now {monitor.health(cid)}; log {monitor.log()[-600:]!r})")
        assert f"processor {processor_id} (test_collector) failed" in health["reason"], health
        assert "errors/s: retries, dead-lettered and skipped messages" in health["reason"], health
        assert "KCM_HEALTH_ERROR_RATE_WARN=1)" in health["reason"], health
        rate = re.search(r"failed \d+ times in \d+ s \(([\d.]+) errors/s", health["reason"])
        assert rate is not None and float(rate.group(1)) > 1.0, health
        status = client.get(f"/consumers/{cid}/status/").json
        counters = status["replicas"][0]["processors"][0]
        assert counters["processor_id"] == processor_id and counters["skipped"] > 0, counters
        assert status["replicas"][0]["state"] == "RUNNING"  # a warning, not a failure: the worker runs on
        text = client.get("/metrics").get_data(as_text=True)
        assert f'kcm_consumer_health{{consumer_id="{cid}",verdict="WARN"}} 1.0' in text

        down.unlink()  # the sink is back
        written = len(runtime.collected(out))
        health = wait_for(lambda: health_is("OK"), timeout=40, interval=0.2,
                          message=f"OK after the recovery (now {monitor.health(cid)}; log {monitor.log()[-600:]!r})")
        assert health["reason"] == "every partition is OK"
        wait_for(lambda: len(runtime.collected(out)) > written, timeout=20, message="messages written again")
        text = client.get("/metrics").get_data(as_text=True)
        assert f'kcm_consumer_health{{consumer_id="{cid}",verdict="OK"}} 1.0' in text
    finally:
        producer.stop()
