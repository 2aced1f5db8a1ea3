"""Kafka helpers for the harness: topics, a fast pre-fill, watermarks, committed offsets, and the consumer
settings every bare baseline shares with kcm's worker."""
from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BATCH_SIZE = 1000   # the worker's defaults (KCM_BATCH_SIZE, KCM_BATCH_TIMEOUT)
BATCH_TIMEOUT = 0.5


def baseline_consumer_config(bootstrap: str, group: str, topic: str = "unused") -> dict:
    """The exact confluent-kafka settings kcm's worker uses (built by workers.config), so a bare loop
    consumes like kcm does; the brief's contract when workers/ is not importable."""
    try:
        from schema.settings import Settings
        from schema.spec import WorkerSpec
        from workers.config import consumer_config
    except ImportError:
        return {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.offset.store": False,
                "enable.auto.commit": True, "auto.offset.reset": "earliest", "fetch.queue.backoff.ms": 10}
    spec = WorkerSpec(consumer_id="bench-baseline", replica=0, generation=1, bootstrap_servers=bootstrap,
                      topic=topic, group_id=group, client_id="kcm-bench-baseline")
    return consumer_config(spec, Settings.from_env({}), {})


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Topics:
    """Creates topics and remembers them so the harness can delete every one it made."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.created: list[str] = []

    def create(self, partitions: int, prefix: str = "kcm-bench") -> str:
        name = unique(prefix)
        self.admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
        self.created.append(name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # metadata propagates after the create future resolves
            meta = self.admin.list_topics(name, timeout=10).topics.get(name)
            if meta is not None and meta.error is None and len(meta.partitions) == partitions:
                return name
            time.sleep(0.1)
        raise RuntimeError(f"topic {name} not ready after 30 s")

    def delete(self, names: list[str]) -> None:
        names = [n for n in names if n in self.created]
        if not names:
            return
        for future in self.admin.delete_topics(names, operation_timeout=30).values():
            try:
                future.result(30)
            except KafkaException:
                pass
        self.created = [n for n in self.created if n not in names]

    def delete_all(self) -> None:
        self.delete(list(self.created))


def value_of(i: int, size: int) -> bytes:
    head = b"%010d" % i
    return head + b"x" * max(0, size - len(head))


def prefill(bootstrap: str, topic: str, count: int, *, size: int = 100, partitions: int = 4,
            value_fn=None) -> float:
    """Produce ``count`` values of ``size`` bytes round-robin over the partitions; returns seconds taken."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20,
                         "batch.size": 1_000_000, "queue.buffering.max.messages": 500_000})
    pad = b"x" * max(0, size - 10)
    started = time.monotonic()
    produce = producer.produce
    for i in range(count):
        value = value_fn(i) if value_fn else b"%010d" % i + pad
        while True:
            try:
                produce(topic, value, partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} messages not delivered to {topic}")
    return time.monotonic() - started


class Offsets:
    """Watermarks and committed offsets through one long-lived client (cheap to poll)."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.client = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("kcm-bench-probe"),
                                "enable.auto.commit": False})
        self._partitions: dict[str, list[int]] = {}

    def partitions(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            self._partitions[topic] = sorted(self.client.list_topics(topic, timeout=10).topics[topic].partitions)
        return self._partitions[topic]

    def high_watermarks(self, topic: str) -> dict[int, int]:
        for attempt in range(50):  # a fresh topic's leader may not be known yet: transient, retried
            try:
                return {p: self.client.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                        for p in self.partitions(topic)}
            except KafkaException:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def total(self, topic: str) -> int:
        return sum(self.high_watermarks(topic).values())

    def committed(self, group: str, topic: str) -> dict[int, int]:
        probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            tps = [TopicPartition(topic, p) for p in self.partitions(topic)]
            return {tp.partition: tp.offset for tp in probe.committed(tps, timeout=10)}
        finally:
            probe.close()

    def wait_committed(self, group: str, topic: str, timeout: float = 30) -> bool:
        """True once the group's committed offsets equal the topic's high watermarks."""
        target = self.high_watermarks(topic)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.committed(group, topic) == target:
                return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        self.client.close()
