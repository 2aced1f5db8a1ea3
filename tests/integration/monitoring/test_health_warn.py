"""The WARN verdict end to end (Burrow's rule: commits move, yet the lag never falls over the window): a real
worker deliberately slower than a real producer reads WARN with the rule in words in the status endpoint and in
/metrics, and OK again once the producer stops and the consumer gains ground."""
from __future__ import annotations

import threading
import time

from confluent_kafka import Producer

from tests.support.kafka import wait_for

# the worker takes 5 messages per batch and sleeps 0.3 s in each: ~16 messages/s, commits every batch
SLOW_WORKER = {"KCM_BATCH_SIZE": "5", "KCM_BATCH_TIMEOUT": "0.1", "KCM_COMMIT_INTERVAL_MS": "200"}
SLOW_PROCESSOR = {"delay_ms": 300}
PRODUCE_PER_TICK, TICK_SECONDS, MAX_MESSAGES = 8, 0.1, 3000  # ~80 messages/s, bounded


class SteadyProducer(threading.Thread):
    """Produces at a fixed rate to one partition until stopped (or MAX_MESSAGES)."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.topic = topic
        self.stopped = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while not self.stopped.is_set() and self.sent < MAX_MESSAGES:
            for _ in range(PRODUCE_PER_TICK):
                self.producer.produce(self.topic, value=b"m%d" % self.sent, partition=0)
                self.sent += 1
            self.producer.poll(0)
            self.stopped.wait(TICK_SECONDS)  # the production rate, not a wait for a state
        self.producer.flush(30)

    def stop(self) -> None:
        self.stopped.set()
        self.join(40)


def test_a_consumer_slower_than_its_producer_is_warn_with_the_rule_then_ok_when_it_gains_ground(
        runtime, monitor, client, topic_factory, kafka_bootstrap):
    topic = topic_factory(partitions=1)
    cid = runtime.create_consumer(topic, running=True, processor_config=SLOW_PROCESSOR)[0]
    runtime.start_supervisor(**SLOW_WORKER)
    runtime.wait_state(cid, "RUNNING")
    monitor.start()
    producer = SteadyProducer(kafka_bootstrap, topic)
    producer.start()
    try:
        def health_is(verdict: str):
            health = client.get(f"/consumers/{cid}/status/").json["health"]
            return health if health["verdict"] == verdict else None

        health = wait_for(lambda: health_is("WARN"), timeout=60, interval=0.2,
                          message=f"WARN in the status (now {monitor.health(cid)}; log {monitor.log()[-600:]!r})")
        assert "partition 0 is WARN" in health["reason"], health
        assert "commits move, but the lag never fell" in health["reason"], health
        assert "the consumer does not keep up" in health["reason"], health
        lag = client.get(f"/consumers/{cid}/status/").json["lag"]
        assert lag["partitions"][0]["committed"] is not None and lag["total_messages"] > 0, lag
        text = client.get("/metrics").get_data(as_text=True)
        assert f'kcm_consumer_health{{consumer_id="{cid}",verdict="WARN"}} 1.0' in text
        assert runtime.state(cid)["state"] == "RUNNING"  # a warning, not a failure: the worker runs on
    finally:
        producer.stop()
    stopped_at = time.monotonic()
    assert producer.sent < MAX_MESSAGES, "the producer hit its cap before the verdict turned WARN"

    health = wait_for(lambda: health_is("OK"), timeout=60, interval=0.2,
                      message=f"OK again (now {monitor.health(cid)}; log {monitor.log()[-600:]!r})")
    assert health["reason"] == "every partition is OK"
    assert monitor.health(cid)["partitions"]["0"]["verdict"] == "OK"
    assert time.monotonic() - stopped_at < 60
    text = client.get("/metrics").get_data(as_text=True)
    assert f'kcm_consumer_health{{consumer_id="{cid}",verdict="OK"}} 1.0' in text
