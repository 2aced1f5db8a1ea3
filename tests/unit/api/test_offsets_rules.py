"""The offsets rules that need no service: the reset body's forms (api/schemas/offsets.py) and where the next
start resumes (api/services/offsets.py's Snapshot, the worker's rule of processors/pipeline.py)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from marshmallow import ValidationError

from api.schemas.offsets import OffsetResetIn, parse_duration
from api.services.errors import Invalid
from api.services.offsets import OffsetsService, Snapshot
from schema.kafka_offsets import Watermarks


@pytest.mark.parametrize(("text", "expected"), [
    ("PT1H", timedelta(hours=1)), ("PT15M", timedelta(minutes=15)), ("P1DT12H", timedelta(days=1, hours=12)),
    ("PT90S", timedelta(seconds=90)), ("pt1.5s", timedelta(seconds=1.5)), ("P2D", timedelta(days=2)),
])
def test_durations_in_java_time_duration_form(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(("text", "words"), [
    ("P1M", "no fixed length"), ("P1Y", "no fixed length"), ("P2W", "no fixed length"), ("PT", "Not a duration"),
    ("P1DT", "Not a duration"), ("1h", "Not a duration"), ("PT0S", "longer than zero"),
    ("P99999999999999999999D", "at most 36500 days"),
])
def test_durations_refused_with_a_reason(text, words):
    with pytest.raises(ValidationError, match=words):
        parse_duration(text)


@pytest.mark.parametrize("value", [1764583200000, "1764583200000", "2025-12-01T10:00:00Z", "2025-12-01T10:00:00",
                                   "2025-12-01T11:00:00+01:00"])
def test_a_timestamp_is_epoch_ms_or_iso_8601_utc_when_no_offset(value):
    assert OffsetResetIn().load({"to": "timestamp", "timestamp": value})["timestamp"] == 1764583200000


def test_dry_run_is_the_default():
    assert OffsetResetIn().load({"to": "earliest"})["dry_run"] is True


def snapshot(stored: dict, every: bool) -> Snapshot:
    return Snapshot(partitions=[0, 1], committed={0: 10, 1: None}, marks={0: Watermarks(0, 20), 1: Watermarks(0, 5)},
                    stored=stored, every_processor_stores=every)


def test_the_next_start_resumes_at_the_smallest_stored_offset_only_when_every_processor_keeps_one():
    assert snapshot({"a": {0: 14}, "b": {0: 12}}, every=True).resume(0) == 12
    assert snapshot({"a": {0: 14}}, every=False).resume(0) == 10  # another processor follows Kafka's commit
    assert snapshot({"a": {0: 14}, "b": {}}, every=True).resume(0) == 10  # one has none for the partition
    assert snapshot({}, every=False).resume(1) is None


def test_a_partition_the_topic_lacks_is_a_422_on_partitions():
    with pytest.raises(Invalid) as raised:
        OffsetsService._chosen([1, 7], [0, 1, 2], "orders")
    assert raised.value.errors == {"json": {"partitions": ["partition(s) 7 not in topic 'orders' (its partitions: 0-2)"]}}
    assert OffsetsService._chosen(None, [0, 1], "orders") == [0, 1]
