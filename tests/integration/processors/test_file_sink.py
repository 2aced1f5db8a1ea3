"""file_sink against the real filesystem, driven by a real confluent-kafka consumer through Pipeline."""
from __future__ import annotations

import base64
import dataclasses
import json
import os

import pytest
from marshmallow import ValidationError
from marshmallow.experimental.context import Context

from processors.base import FatalError, Record, RetriableError
from processors.file_sink import FileSinkProcessor
from processors.pipeline import Pipeline
from schema.settings import Settings
from schema.spec import ProcessorSpec
from tests.integration.processors.conftest import drive
from tests.support.kafka import produce


def _pipeline(context, **config):
    spec = ProcessorSpec(id="fs-1", processor_type="file_sink", config=config)
    pipeline = Pipeline.build([spec], consumer_id="c-fs", context=context)
    pipeline.open()
    return pipeline


def test_json_sink_receives_100k_messages_with_every_partition_offset(kafka_bootstrap, topic_factory, context,
                                                                      sink_root):
    topic = topic_factory(partitions=4)
    produce(kafka_bootstrap, topic, 100_000, size=40)
    pipeline = _pipeline(context, file_path="out/all.jsonl", format="json")
    try:
        _group, delivered = drive(kafka_bootstrap, topic, pipeline, expected=100_000)
    finally:
        pipeline.close()
    assert delivered == 100_000
    lines = (sink_root / "out" / "all.jsonl").read_bytes().splitlines()
    assert len(lines) == 100_000
    seen = {(e["partition"], e["offset"]) for e in map(json.loads, lines)}
    assert len(seen) == 100_000
    per_partition: dict[int, set[int]] = {}
    for partition, offset in seen:
        per_partition.setdefault(partition, set()).add(offset)
    for offsets in per_partition.values():  # contiguous from 0: no offset missing
        assert offsets == set(range(len(offsets)))
    first = json.loads(lines[0])
    assert first["topic"] == topic and first["key"].startswith("k") and first["timestamp"] > 0


def test_raw_sink_writes_each_value_once_per_line(kafka_bootstrap, topic_factory, context, sink_root):
    topic = topic_factory(partitions=3)
    produce(kafka_bootstrap, topic, 20_000, value_fn=lambda i: b"value-%d" % i)
    pipeline = _pipeline(context, path="raw.log", format="raw")  # a row stored before file_path
    try:
        drive(kafka_bootstrap, topic, pipeline, expected=20_000)
    finally:
        pipeline.close()
    lines = (sink_root / "raw.log").read_bytes().splitlines()
    assert sorted(lines) == sorted(b"value-%d" % i for i in range(20_000))


def test_json_envelope_keeps_binary_values_as_base64_and_headers(context, sink_root):
    pipeline = _pipeline(context, file_path="bin.jsonl", format="json")
    binary = bytes(range(256))
    pipeline.deliver([
        Record("t", 0, 7, binary, key_=b"k", headers_=(("h", b"v"),), timestamp_=(1, 1_700_000_000_000)),
        Record("t", 0, 8, "héllo".encode()),
    ])
    pipeline.close()
    first, second = map(json.loads, (sink_root / "bin.jsonl").read_bytes().splitlines())
    assert base64.b64decode(first["value"]) == binary and first["value_encoding"] == "base64"
    assert first["headers"] == [{"key": "h", "value": "v"}] and first["timestamp"] == 1_700_000_000_000
    assert second["value"] == "héllo" and second["offset"] == 8 and second["key"] is None


def test_size_rotation_keeps_every_line_across_files(context, sink_root):
    pipeline = _pipeline(context, file_path="rot/r.log", rotate_bytes=2_000)
    for start in range(0, 1_000, 100):
        pipeline.deliver([Record("t", 0, i, b"line-%04d" % i) for i in range(start, start + 100)])
    pipeline.close()
    files = sorted(os.listdir(sink_root / "rot"))
    assert len(files) > 1 and "r.log" in files
    lines = [ln for f in files for ln in (sink_root / "rot" / f).read_bytes().splitlines()]
    assert sorted(lines) == [b"line-%04d" % i for i in range(1_000)]


def test_time_rotation_rotates_an_old_file(context, sink_root):
    pipeline = _pipeline(context, file_path="time.log", rotate_seconds=1)
    processor = pipeline.stages[0][1]
    processor._opened_at -= 5  # the file was opened 5 s ago: the next flush must rotate it
    pipeline.deliver([Record("t", 0, 0, b"a")])
    pipeline.deliver([Record("t", 0, 1, b"b")])
    pipeline.close()
    rotated = [f for f in os.listdir(sink_root) if f.startswith("time.log.")]
    assert len(rotated) == 1 and (sink_root / rotated[0]).read_bytes() == b"a\n"
    assert (sink_root / "time.log").read_bytes() == b"b\n"


def _validate(config: dict, sink_root) -> dict:
    """As the API validates: with its settings (the root) in marshmallow's Context."""
    settings = dataclasses.replace(Settings.from_env(), file_sink_root=str(sink_root))
    with Context({"settings": settings}):
        return FileSinkProcessor.validate_config(config)


@pytest.mark.parametrize("path", ["../escape.log", "a/../../escape.log", "/etc/passwd", "/tmp/x.log",
                                  "ok\x00.log", "", "dir/"])
def test_path_outside_the_root_is_rejected_by_the_config_schema(sink_root, path):
    with pytest.raises(ValidationError) as info:
        _validate({"file_path": path}, sink_root)
    assert "file_path" in info.value.messages


def test_the_root_is_named_in_the_message_and_the_alias_is_checked_the_same(sink_root):
    with pytest.raises(ValidationError) as info:
        _validate({"path": "/etc/passwd"}, sink_root)
    assert info.value.messages == {"file_path": [f"path must be inside the file sink root {sink_root}"]}


def test_path_is_an_alias_of_file_path_and_both_together_are_refused(sink_root):
    assert FileSinkProcessor.canonical_config({"path": "a.log", "format": "json"}) == {
        "file_path": "a.log", "format": "json"}
    assert _validate({"path": "a.log"}, sink_root)["file_path"] == "a.log"
    with pytest.raises(ValidationError) as info:
        _validate({"path": "a.log", "file_path": "b.log"}, sink_root)
    assert list(info.value.messages) == ["path"]


def test_symlink_escaping_the_root_is_rejected(sink_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (sink_root / "link").symlink_to(outside)
    with pytest.raises(ValidationError):
        _validate({"file_path": "link/x.log"}, sink_root)
    (sink_root / "file-link.log").symlink_to(outside / "target.log")
    with pytest.raises(ValidationError):
        _validate({"file_path": "file-link.log"}, sink_root)


def test_absolute_path_inside_the_root_is_accepted(sink_root):
    config = _validate({"file_path": str(sink_root / "in" / "x.log")}, sink_root)
    assert config["file_path"] == str(sink_root / "in" / "x.log")


def test_a_path_outside_the_root_that_reached_the_worker_is_fatal_at_open(context, sink_root):
    """Outside the API no settings are in the Context: the worker's open() is the check, with its own root."""
    pipeline = Pipeline.build([ProcessorSpec(id="fs-x", processor_type="file_sink",
                                             config={"file_path": "/tmp/escape.log"})], context=context)
    with pytest.raises(FatalError, match=f"inside the file sink root {sink_root}"):
        pipeline.open()


def test_open_rechecks_a_symlink_planted_after_validation(context, sink_root, tmp_path):
    config = _validate({"file_path": "later.log"}, sink_root)
    (sink_root / "later.log").symlink_to(tmp_path / "stolen.log")
    processor = FileSinkProcessor(config, consumer_id="c", processor_id="p", context=context)
    with pytest.raises(FatalError, match="outside the file sink root"):
        processor.open()
    assert not (tmp_path / "stolen.log").exists()


def test_fsync_every_batch_by_default_and_at_most_every_interval_otherwise(context, sink_root, monkeypatch):
    import processors.file_sink as file_sink

    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(file_sink.os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    every_batch = _pipeline(context, file_path="every.log")
    for i in range(5):
        every_batch.deliver([Record("t", 0, i, b"x")])
    assert len(calls) == 5
    calls.clear()
    interval = _pipeline(context, file_path="interval.log", fsync_interval_ms=60_000)
    for i in range(5):
        interval.deliver([Record("t", 0, i, b"x")])
    assert len(calls) == 0  # within the interval: written (page cache) but not fsync'd
    interval.close()
    assert len(calls) == 1  # close always fsyncs
    assert (sink_root / "interval.log").read_bytes() == b"x\n" * 5
    every_batch.close()


def test_open_cuts_a_torn_last_line_left_by_a_killed_writer(context, sink_root):
    """kill -9 in the middle of a batch's write leaves a line without its newline (CI saw one glued to the
    redelivered batch). The batch's offsets were never stored, so open cuts the torn line before appending."""
    torn = sink_root / "torn.jsonl"
    torn.write_bytes(b'{"offset":1}\n{"offset":2}\n{"topic":"t","partiti')
    pipeline = _pipeline(context, file_path="torn.jsonl", format="raw")
    pipeline.deliver([Record("t", 0, 3, b'{"offset":3}')])
    pipeline.close()
    assert torn.read_bytes() == b'{"offset":1}\n{"offset":2}\n{"offset":3}\n'


def test_open_cuts_a_torn_line_longer_than_one_read_chunk_and_a_file_with_no_complete_line(context, sink_root):
    long_tail = sink_root / "long.log"
    long_tail.write_bytes(b"whole\n" + b"x" * 200_000)
    no_line = sink_root / "none.log"
    no_line.write_bytes(b"y" * 70_000)
    for name in ("long.log", "none.log"):
        pipeline = _pipeline(context, file_path=name)
        pipeline.deliver([Record("t", 0, 0, b"next")])
        pipeline.close()
    assert long_tail.read_bytes() == b"whole\nnext\n"
    assert no_line.read_bytes() == b"next\n"


def test_a_write_failing_half_way_is_cut_back_so_the_retry_leaves_whole_lines(context, sink_root, monkeypatch):
    import processors.file_sink as file_sink

    real_write = os.write
    failures = iter([True])

    def write_half_then_fail(fd, data):
        if next(failures, False):
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    processor = FileSinkProcessor({"file_path": "half.log", "format": "raw", "fsync_interval_ms": 0, "rotate_bytes": 0,
                                   "rotate_seconds": 0}, consumer_id="c", processor_id="p", context=context)
    processor.open()
    processor.process([Record("t", 0, 0, b"first")])
    processor.flush()
    monkeypatch.setattr(file_sink.os, "write", write_half_then_fail)
    batch = [Record("t", 0, i, b"line-%d" % i) for i in range(1, 100)]
    processor.process(batch)
    with pytest.raises(RetriableError, match="No space left"):
        processor.flush()
    assert (sink_root / "half.log").read_bytes() == b"first\n"  # the half batch is gone, not left torn
    processor.discard()
    processor.process(batch)
    processor.flush()
    processor.close()
    assert (sink_root / "half.log").read_bytes().splitlines() == [b"first"] + [b"line-%d" % i for i in range(1, 100)]
