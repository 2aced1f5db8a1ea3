"""Helpers for tests that talk to the real Kafka: produce, drain, read committed offsets."""
from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition


def produce(bootstrap: str, topic: str, count: int, *, size: int = 100, key_prefix: str = "k",
            partition: int | None = None, value_fn=None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    pad = b"x" * max(0, size - 12)
    for i in range(count):
        value = value_fn(i) if value_fn else b"%010d:" % i + pad
        kwargs = {"key": f"{key_prefix}{i}".encode(), "value": value}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise AssertionError(f"{remaining} messages were not delivered to {topic}")


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kcm-tests-watermarks"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        result = {}
        for p in metadata.topics[topic].partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            result[p] = high
        return result
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
        return {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
    finally:
        consumer.close()


def consume_all(bootstrap: str, topic: str, group: str, expected: int, *, timeout: float = 60) -> list:
    """Consume with a group until ``expected`` messages arrived; commit synchronously; return the messages."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    received = []
    deadline = time.monotonic() + timeout
    try:
        while len(received) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(msg.error())
                received.append(msg)
        if received:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return received


def wait_for(predicate, timeout: float = 30, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message} (last: {last!r})")
