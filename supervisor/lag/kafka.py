"""What the lag monitor asks one Kafka cluster, batched: per sample one metadata request, one
``list_consumer_group_offsets`` per group, one ``list_offsets`` for the high and one for the low watermarks of
every partition of every topic watched on the cluster (those reads are schema/kafka_offsets.py's); and, for lag
in seconds, the timestamp of the oldest unconsumed message of each lagging partition, read once per (partition,
offset) by a short-lived consumer.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from schema import kafka_offsets
from schema.kafka_offsets import KafkaUnavailable, Watermarks, error_code

log = logging.getLogger("kcm.lag")

READ_TIMEOUT = 5.0  # the longest wait for the oldest messages of one sample
READER_GROUP = "kcm-lag-monitor"  # assign() only: never joins a group, never commits

ClusterUnavailable = KafkaUnavailable  # the lag monitor's name for it; the message names the Kafka error code only


@dataclass
class ClusterOffsets:
    partitions: dict[str, list[int]]  # topic -> its partitions (absent: the topic does not exist)
    watermarks: dict[tuple[str, int], Watermarks]
    committed: dict[tuple[str, str, int], int | None]  # (group, topic, partition) -> offset; None: never
    group_errors: dict[str, str]  # group -> why its offsets could not be read


class Cluster:
    """The Kafka reads themselves are schema/kafka_offsets.py's, shared with the offsets API."""

    def __init__(self, config: dict):
        self.config = config
        self.admin = kafka_offsets.admin_client(config)
        self.reader = OldestMessageReader(config)

    def offsets(self, groups: dict[str, set[str]]) -> ClusterOffsets:
        """``groups``: consumer group -> the topics kcm consumes with it on this cluster."""
        topics = sorted(set().union(*groups.values())) if groups else []
        partitions = kafka_offsets.topic_partitions(self.admin, topics)
        tps = [TopicPartition(t, p) for t, ps in partitions.items() for p in ps]
        requests = {group: [TopicPartition(t, p) for t in sorted(topics) for p in partitions.get(t, ())]
                    for group, topics in groups.items()}
        committed, group_errors = kafka_offsets.committed_offsets(self.admin, requests)
        watermarks = kafka_offsets.watermarks(self.admin, tps)
        return ClusterOffsets(partitions, watermarks, committed, group_errors)

    def close(self) -> None:
        self.reader.cache.clear()


class OldestMessageReader:
    """The timestamp of the message at an offset, cached by (topic, partition, offset): a stuck consumer costs
    one read, and every later sample computes its lag in seconds from the cache."""

    def __init__(self, config: dict):
        self.config = config
        self.cache: dict[tuple[str, int, int], float | None] = {}

    def timestamps(self, wanted: Iterable[tuple[str, int, int]]) -> dict[tuple[str, int, int], float | None]:
        """Epoch seconds of each ``(topic, partition, offset)``'s message (or the next one that exists: a
        compacted or transaction-marker offset); None when none could be read."""
        wanted = set(wanted)
        missing = sorted(wanted - set(self.cache))
        if missing:
            self.cache.update(self._read(missing))
        self.cache = {key: value for key, value in self.cache.items() if key in wanted}  # bounded: this sample's
        return {key: self.cache.get(key) for key in wanted}

    def _read(self, missing: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], float | None]:
        found: dict[tuple[str, int, int], float | None] = {}  # a partition not read in time is retried next sample
        by_partition = {(t, p): (t, p, o) for t, p, o in missing}
        consumer = Consumer({**self.config, "group.id": READER_GROUP, "enable.auto.commit": False,
                             "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                             "enable.partition.eof": True, "queued.max.messages.kbytes": 1024,
                             "fetch.wait.max.ms": 100})
        try:
            consumer.assign([TopicPartition(t, p, o) for t, p, o in missing])
            pending = set(by_partition)
            deadline = time.monotonic() + READ_TIMEOUT
            while pending and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=len(pending), timeout=0.2):
                    key = (msg.topic(), msg.partition())
                    if key not in pending:
                        continue
                    error = msg.error()
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        continue
                    kind, ts = msg.timestamp() if error is None else (TIMESTAMP_NOT_AVAILABLE, 0)
                    found[by_partition[key]] = ts / 1000.0 if kind != TIMESTAMP_NOT_AVAILABLE else None
                    pending.discard(key)
                    consumer.pause([TopicPartition(*key)])
            if pending:
                log.warning("LagTimestampTimeout: the oldest message of %d partition(s) was not read in %.0f s",
                            len(pending), READ_TIMEOUT)
        except KafkaException as exc:
            log.warning("LagTimestampFailed: %s", error_code(exc))
        finally:
            consumer.close()
        return found
