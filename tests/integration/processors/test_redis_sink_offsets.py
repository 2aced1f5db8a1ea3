"""redis_sink's stream marks and the offsets API (issues 13 + 16): a rewind of the consumer's offsets rewinds the
sink's marks too, so the rewound messages are appended again instead of being skipped as redeliveries.

End to end through the API, a real supervisor and its worker: 200 messages into a stream; stopped, the offsets
view shows the sink's marks; a reset to earliest (dry_run false) and a start append the 200 again (400 entries);
a plain restart adds none. Then the hooks on their own against the real target Redis: the marks of streams
named by ``{key}`` (found by SCAN), a reset of one partition, a delete that forgets only this processor's
marks, and an unreachable target reported without its URL."""
from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from api.context import EXTENSION
from processors.base import Record, RetriableError
from processors.redis_sink import RedisSinkProcessor
from schema import keys
from tests.integration.processors import test_redis_sink as sink_tests
from tests.support.kafka import committed_offsets, high_watermarks, produce, wait_for

TARGET, TARGET_ENV = sink_tests.TARGET, sink_tests.TARGET_ENV
# the target Redis (its own db, flushed around each test) and a supervisor whose workers can reach it
target_url, target, runtime = sink_tests.target_url, sink_tests.target, sink_tests.runtime


# ------------------------------------------------------------------ end to end: API, supervisor, worker
@pytest.fixture
def api(runtime):
    from api import create_app
    from schema.settings import Settings
    from tests.integration.api.conftest import ADMIN_TOKEN, AuthenticatedClient

    app = create_app(Settings.from_env({**runtime.env, "KCM_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN}))
    app.test_client_class = AuthenticatedClient
    yield app.test_client()
    app.extensions[EXTENSION].close()


def test_a_reset_to_earliest_appends_the_rewound_200_again_and_a_plain_restart_adds_none(
        api, runtime, target, topic_factory):
    topic = topic_factory(partitions=2)
    group, stream = f"kcm-rs-{topic}", f"rs:{topic}"
    created = api.post("/consumers/", json={
        "bootstrap_servers": [runtime.bootstrap], "topic": topic, "consumer_group": group,
        "downstream_processors": [{"processor_type": "redis_sink", "config": {"url": TARGET, "stream": "rs:{topic}"}}]})
    assert created.status_code == 201, created.json
    cid, pid = created.json["id"], created.json["downstream_processors"][0]["id"]
    produce(runtime.bootstrap, topic, 200, value_fn=lambda i: b"%06d" % i)
    highs = high_watermarks(runtime.bootstrap, topic)
    runtime.start_supervisor()

    def run_until(entries: int, message: str) -> None:
        assert api.post(f"/consumers/{cid}/start/").status_code == 200
        wait_for(lambda: target.xlen(stream) >= entries, timeout=60, message=message)
        assert api.post(f"/consumers/{cid}/stop/").status_code == 200
        runtime.wait_state(cid, "STOPPED")
        wait_for(lambda: committed_offsets(runtime.bootstrap, group, topic) == highs, timeout=20,
                 message="the warm stop committed everything")

    run_until(200, "the 200 appended")
    view = api.get(f"/consumers/{cid}/offsets/").json
    assert view["exactly_once_processors"] == [{"id": pid, "processor_type": "redis_sink"}], view
    assert {p["partition"]: p["processor_offsets"] for p in view["partitions"]} == {
        p: {pid: high} for p, high in highs.items()}

    done = api.post(f"/consumers/{cid}/offsets/reset/", json={"to": "earliest", "dry_run": False})
    assert done.status_code == 200, done.json
    assert {p["partition"]: (p["from"], p["to"]) for p in done.json["partitions"]} == {
        p: (high, 0) for p, high in highs.items()}
    view = api.get(f"/consumers/{cid}/offsets/").json
    assert {p["partition"]: (p["committed"], p["processor_offsets"][pid]) for p in view["partitions"]} == {
        p: (0, 0) for p in highs}

    run_until(400, "the rewound 200 appended again")
    values = Counter(fields[b"value"] for _id, fields in target.xrange(stream))
    assert target.xlen(stream) == 400 and len(values) == 200 and set(values.values()) == {2}

    # a plain restart: only the 10 new messages are appended, none of the 400 again
    produce(runtime.bootstrap, topic, 10, key_prefix="new", value_fn=lambda i: b"new-%d" % i)
    highs = high_watermarks(runtime.bootstrap, topic)
    run_until(410, "the 10 new messages appended")
    assert target.xlen(stream) == 410


# ------------------------------------------------------------------ the hooks against the real target Redis
def _sink(context, consumer_id: str, processor_id: str, stream: str) -> RedisSinkProcessor:
    config = RedisSinkProcessor.validate_config({"url": TARGET, "stream": stream})
    sink = RedisSinkProcessor(config, consumer_id=consumer_id, processor_id=processor_id,
                              context=dataclasses.replace(context, consumer_id=consumer_id, topic="orders"))
    sink.open()
    return sink


def _write(sink: RedisSinkProcessor, records: list[Record]) -> None:
    sink.process(records)
    sink.flush()


def _records(partition: int, offsets, key) -> list[Record]:
    return [Record("orders", partition, o, b"v-%d-%d" % (partition, o), key_=key(o)) for o in offsets]


def test_the_hooks_read_move_and_forget_only_this_processors_marks_over_key_named_streams(
        context, target_url, target):
    by_key = "by-key:{key}"
    ours = _sink(context, "c-marks", "rs", by_key)
    partition0 = _records(0, range(10), lambda o: b"a" if o < 5 else b"b")
    _write(ours, partition0 + _records(1, range(3), lambda o: b"a"))
    for other in (_sink(context, "c-other", "rs", by_key), _sink(context, "c-marks", "rs2", by_key)):
        _write(other, _records(0, range(4), lambda o: b"a"))
        other.close()
    config, ctx = ours.config, ours.context
    others = {keys.redis_sink_offset_field("c-other", "rs", "orders", 0).encode(): b"3",
              keys.redis_sink_offset_field("c-marks", "rs2", "orders", 0).encode(): b"3"}

    # partition 0: by-key:a up to 4, by-key:b up to 9; partition 1: by-key:a up to 2
    assert RedisSinkProcessor.stored_offsets(config, ctx, "rs") == {0: 10, 1: 3}

    RedisSinkProcessor.reset_stored_offsets(config, ctx, "rs", {0: 2})
    assert RedisSinkProcessor.stored_offsets(config, ctx, "rs") == {0: 2, 1: 3}
    assert target.xlen("by-key:a") == 5 + 3 + 4 + 4 and target.xlen("by-key:b") == 5
    _write(ours, partition0)  # partition 0 delivered again after the rewind: appended again from offset 2
    assert target.xlen("by-key:a") == 16 + 3 and target.xlen("by-key:b") == 5 + 5
    assert RedisSinkProcessor.stored_offsets(config, ctx, "rs") == {0: 10, 1: 3}

    RedisSinkProcessor.reset_stored_offsets(config, ctx, "rs", None)
    assert RedisSinkProcessor.stored_offsets(config, ctx, "rs") == {}
    assert target.hgetall(keys.redis_sink_offsets_key(b"by-key:a")) == others  # the others' marks untouched
    assert not target.exists(keys.redis_sink_offsets_key(b"by-key:b"))
    ours.close()


def test_hash_mode_keeps_no_offsets_and_an_unreachable_target_is_retriable_without_its_url(
        context, target, monkeypatch):
    ctx = dataclasses.replace(context, topic="orders")
    hashed = RedisSinkProcessor.validate_config({"url": TARGET, "mode": "hash"})
    assert RedisSinkProcessor.stored_offsets(hashed, ctx, "rs") is None
    RedisSinkProcessor.reset_stored_offsets(hashed, ctx, "rs", None)  # nothing to forget

    monkeypatch.setenv(TARGET_ENV, "redis://:s3cret-word@127.0.0.1:1/3")
    config = RedisSinkProcessor.validate_config({"url": TARGET, "socket_timeout": 2})
    for call in (lambda: RedisSinkProcessor.stored_offsets(config, ctx, "rs"),
                 lambda: RedisSinkProcessor.reset_stored_offsets(config, ctx, "rs", {0: 0})):
        with pytest.raises(RetriableError) as raised:
            call()
        assert "s3cret-word" not in str(raised.value) and "redis_sink" in str(raised.value)
