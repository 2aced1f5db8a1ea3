"""redis_sink against a real Redis target (its own db index, never the control plane's), through the API,
the pipeline and, end to end, a real supervisor whose worker is killed with -9 mid-stream."""
from __future__ import annotations

import dataclasses
import os
import signal
import uuid

import pytest
import redis

from api.context import EXTENSION
from processors.base import FatalError, Record
from processors.pipeline import Pipeline
from processors.redis_sink import CONTROL_PLANE_MESSAGE
from schema import keys
from schema.spec import ProcessorSpec
from tests.integration.api.conftest import make_app
from tests.support.kafka import committed_offsets, high_watermarks, produce, wait_for

TARGET_ENV = "KCM_SECRET_TEST_REDIS_SINK"
TARGET = "${env:" + TARGET_ENV + "}"


def _target_db() -> int:
    """The sink's target: KCM_TEST_REDIS_SINK_DB, else the db after the test db (never 0, never the test db)."""
    test_db = int(os.environ.get("KCM_TEST_REDIS_DB", "15"))
    db = int(os.environ.get("KCM_TEST_REDIS_SINK_DB", str((test_db + 1) % 16 or 1)))
    assert db not in (0, test_db), "the redis_sink target must be neither db 0 nor the test db"
    return db


@pytest.fixture
def target_url(redis_test_url, monkeypatch) -> str:
    url = redis_test_url.rsplit("/", 1)[0] + f"/{_target_db()}"
    monkeypatch.setenv(TARGET_ENV, url)
    return url


@pytest.fixture
def target(target_url):
    client = redis.Redis.from_url(target_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def _pipeline(context, consumer_id="c-redis", on_error="skip", **config) -> Pipeline:
    spec = ProcessorSpec(id="rs", processor_type="redis_sink", on_error=on_error,
                         config={"url": TARGET, "max_retries": 0, **config})
    pipeline = Pipeline.build([spec], context=dataclasses.replace(context, consumer_id=consumer_id))
    pipeline.open()
    return pipeline


def _records(offsets, topic="orders", partition=0, key=lambda o: b"k%d" % o, value=lambda o: b"v-%d" % o):
    return [Record(topic, partition, o, value(o), key_=key(o), timestamp_=(1, 1_700_000_000_000 + o))
            for o in offsets]


def _entries(client, stream) -> list[dict]:
    return [{k.decode(): v for k, v in fields.items()} for _id, fields in client.xrange(stream)]


# ------------------------------------------------------------------ config through the API
@pytest.fixture
def api(pg_clean, pg_url, redis_client, redis_test_url, target_url):
    app = make_app(pg_url, redis_test_url)
    yield app.test_client()
    app.extensions[EXTENSION].close()


def _create(api, config: dict):
    return api.post("/consumers/", json={
        "bootstrap_servers": ["127.0.0.1:19092"], "topic": "orders", "consumer_group": f"g-{uuid.uuid4().hex[:8]}",
        "downstream_processors": [{"processor_type": "redis_sink", "config": config}]})


def _config_errors(response) -> dict:
    assert response.status_code == 422, response.json
    return response.json["errors"]["json"]["downstream_processors"]["0"]["config"]


@pytest.mark.parametrize(("config", "field", "fragment"), [
    ({"url": "redis://127.0.0.1:16379/9"}, "url", "Must be a reference"),
    ({"url": "${env:PATH}"}, "url", "KCM_SECRET_"),
    ({"url": TARGET, "mode": "list"}, "mode", "Must be one of"),
    ({"url": TARGET, "stream": "{offset}"}, "stream", "Unknown field {offset}"),
    ({"url": TARGET, "mode": "hash", "key": "{topic.__class__}"}, "key", "Unknown field"),
    ({"url": TARGET, "maxlen": 0}, "maxlen", "greater than or equal to 1"),
    ({"url": TARGET, "colour": "red"}, "colour", "Unknown field"),
])
def test_bad_configs_are_422_with_a_message_on_the_field(api, config, field, fragment):
    errors = _config_errors(_create(api, config))
    assert fragment in " ".join(errors[field]), errors


def test_the_control_plane_redis_is_refused_unless_named_explicitly(api, redis_test_url, monkeypatch):
    monkeypatch.setenv("KCM_SECRET_CONTROL_PLANE", redis_test_url.replace("127.0.0.1", "localhost"))
    config = {"url": "${env:KCM_SECRET_CONTROL_PLANE}", "mode": "hash"}
    errors = _config_errors(_create(api, config))
    assert errors == {"url": [CONTROL_PLANE_MESSAGE]}
    assert "16379" not in CONTROL_PLANE_MESSAGE  # the message never shows what the reference holds
    assert _create(api, {**config, "allow_control_plane": True}).status_code == 201
    assert _create(api, {"url": TARGET}).status_code == 201  # another db of the same server is another target


def test_the_worker_refuses_the_control_plane_too(context, target, monkeypatch):
    monkeypatch.setenv(TARGET_ENV, context.settings.redis_url)  # the reference changed after the API checked it
    with pytest.raises(FatalError, match="control-plane"):
        _pipeline(context)


# ------------------------------------------------------------------ the pipeline against the real target
def test_stream_entries_carry_coordinates_and_a_redelivered_batch_adds_nothing(context, target):
    pipeline = _pipeline(context, stream="s:{topic}")
    pipeline.deliver(_records(range(0, 10)) + _records(range(0, 4), partition=1))
    pipeline.deliver(_records(range(0, 10)))  # redelivered after a crash: skipped
    pipeline.deliver(_records(range(5, 15)) + _records(range(2, 6), partition=1))  # half old, half new
    pipeline.close()
    entries = _entries(target, b"s:orders")
    coordinates = [(int(e["partition"]), int(e["offset"])) for e in entries]
    assert sorted(coordinates) == sorted([(0, o) for o in range(15)] + [(1, o) for o in range(6)])
    assert len(coordinates) == len(set(coordinates)) == 21
    first = next(e for e in entries if e["partition"] == b"0" and e["offset"] == b"0")
    assert first == {"topic": b"orders", "partition": b"0", "offset": b"0", "timestamp": b"1700000000000",
                     "key": b"k0", "value": b"v-0"}
    offsets = target.hgetall(keys.redis_sink_offsets_key(b"s:orders"))
    assert offsets == {b"c-redis:rs:orders:0": b"14", b"c-redis:rs:orders:1": b"5"}


def test_another_consumer_writing_the_same_stream_is_not_skipped(context, target):
    for consumer in ("c-one", "c-two"):
        pipeline = _pipeline(context, consumer_id=consumer, stream="shared")
        pipeline.deliver(_records(range(5)))
        pipeline.close()
    assert target.xlen("shared") == 10


def test_maxlen_caps_the_stream_approximately(context, target):
    pipeline = _pipeline(context, stream="capped", maxlen=50)
    for start in range(0, 1000, 200):
        pipeline.deliver(_records(range(start, start + 200)))
    pipeline.close()
    length = target.xlen("capped")
    assert 50 <= length <= 150, length  # MAXLEN ~ trims whole nodes of 100 entries (stream-node-max-entries)
    assert _entries(target, "capped")[-1]["offset"] == b"999"


def test_hash_mode_overwrites_by_key_and_a_tombstone_deletes(context, target):
    pipeline = _pipeline(context, mode="hash", key="h:{key}", ttl_seconds=600)
    pipeline.deliver(_records(range(6), key=lambda o: b"k%d" % (o % 3)))  # k0..k2 written twice in one batch
    pipeline.deliver(_records(range(6), key=lambda o: b"k%d" % (o % 3)))  # redelivered: the same end state
    pipeline.deliver([Record("orders", 0, 6, None, key_=b"k2")])
    pipeline.close()
    assert sorted(target.keys("h:*")) == [b"h:k0", b"h:k1"]
    assert target.hgetall("h:k1") == {b"topic": b"orders", b"partition": b"0", b"offset": b"4",
                                      b"timestamp": b"1700000000004", b"key": b"k1", b"value": b"v-4"}
    assert 0 < target.ttl("h:k0") <= 600


def test_string_mode_sets_the_value(context, target):
    pipeline = _pipeline(context, mode="string", key="{topic}:{partition}:{offset}")
    pipeline.deliver(_records(range(3)))
    pipeline.close()
    assert target.mget("orders:0:0", "orders:0:2") == [b"v-0", b"v-2"] and target.ttl("orders:0:0") == -1


def test_a_key_of_another_type_is_poison_when_the_message_names_it_and_fatal_otherwise(context, target):
    target.set("s:bad", "a string in the way")
    pipeline = _pipeline(context, stream="s:{key}", on_error="skip")
    pipeline.deliver(_records(range(5), key=lambda o: b"bad" if o == 2 else b"k%d" % o))
    pipeline.close()
    assert pipeline.stats["rs"]["skipped"] == 1
    assert sorted(target.keys("s:k*")) == [b"s:k0", b"s:k1", b"s:k3", b"s:k4"]
    assert target.get("s:bad") == b"a string in the way"

    target.set("fixed", "a string in the way")
    pipeline = _pipeline(context, stream="fixed")
    with pytest.raises(FatalError, match="WRONGTYPE"):
        pipeline.deliver(_records(range(3)))
    pipeline.close()


def test_an_unreachable_target_is_retried_not_fatal(context, target, monkeypatch):
    from processors.base import RetriableError
    from processors.redis_sink import RedisSinkProcessor

    monkeypatch.setenv(TARGET_ENV, "redis://127.0.0.1:1/0")
    sink = RedisSinkProcessor(RedisSinkProcessor.validate_config({"url": TARGET, "socket_timeout": 1}),
                              consumer_id="c", processor_id="rs", context=context)
    sink.open()
    sink.process(_records(range(2)))
    with pytest.raises(RetriableError, match="ConnectionError"):
        sink.flush()
    sink.close()
    checks = RedisSinkProcessor.check(RedisSinkProcessor.validate_config({"url": TARGET, "socket_timeout": 1}),
                                      context)
    assert [c.ok for c in checks] == [False] and "127.0.0.1:1" not in checks[0].detail


def test_check_pings_the_target_and_finds_a_stream_name_in_the_way(context, target):
    from processors.redis_sink import RedisSinkProcessor

    config = RedisSinkProcessor.validate_config({"url": TARGET, "stream": "fixed"})
    assert [(c.ok, c.detail) for c in RedisSinkProcessor.check(config, context)] == [(True, "Redis answered PING.")]
    target.set("fixed", "x")
    assert [c.ok for c in RedisSinkProcessor.check(config, context)] == [False]


# ------------------------------------------------------------------ end to end: supervisor, kill -9, restart
@pytest.fixture
def runtime(pg_url, pg_engine, pg_clean, redis_client, redis_test_url, kafka_bootstrap, tmp_path, target_url):
    from tests.integration.runtime.conftest import FAST, Runtime

    # one commit right after the assignment, then none for 10 minutes: the kill redelivers nearly everything
    env = {**os.environ, **FAST, "KCM_DATABASE_URL": pg_url, "KCM_REDIS_URL": redis_test_url,
           "KCM_SUPERVISOR_ID": f"test-{uuid.uuid4().hex[:6]}", "KCM_BATCH_SIZE": "100",
           "KCM_COMMIT_INTERVAL_MS": "600000", TARGET_ENV: target_url}
    rt = Runtime(pg_engine=pg_engine, redis_client=redis_client, kafka_bootstrap=kafka_bootstrap, tmp_path=tmp_path,
                 env=env)
    yield rt
    rt.cleanup()


def test_kill_9_mid_stream_then_restart_leaves_exactly_one_entry_per_message(runtime, target, topic_factory):
    from api import create_app
    from schema.settings import Settings
    from tests.integration.api.conftest import ADMIN_TOKEN, AuthenticatedClient

    app = create_app(Settings.from_env({**runtime.env, "KCM_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN}))
    app.test_client_class = AuthenticatedClient
    api = app.test_client()
    topic = topic_factory(partitions=2)
    created = api.post("/consumers/", json={
        "bootstrap_servers": [runtime.bootstrap], "topic": topic, "consumer_group": f"kcm-rs-{topic}",
        "downstream_processors": [{"processor_type": "redis_sink",
                                   "config": {"url": TARGET, "stream": "seq:{topic}", "maxlen": 100_000}}]})
    assert created.status_code == 201, created.json
    cid = created.json["id"]
    stream = f"seq:{topic}"
    runtime.start_supervisor()
    assert api.post(f"/consumers/{cid}/start/").status_code in (200, 202)
    pid = runtime.worker_pid(cid)

    half = 1_000
    produce(runtime.bootstrap, topic, half, value_fn=lambda i: b"%06d" % i)
    wait_for(lambda: target.xlen(stream) >= half, timeout=30, message=f"{half} entries")
    group = f"kcm-rs-{topic}"
    before = sum(max(o, 0) for o in committed_offsets(runtime.bootstrap, group, topic).values())
    os.kill(pid, signal.SIGKILL)  # nothing but the first batches is committed: the restart redelivers the rest
    produce(runtime.bootstrap, topic, half, value_fn=lambda i: b"%06d" % (half + i))
    wait_for(lambda: runtime.state(cid).get("pid") not in (None, "", str(pid))
             and runtime.state(cid).get("state") == "RUNNING", timeout=40, message="a restarted worker")
    highs = high_watermarks(runtime.bootstrap, topic)
    wait_for(lambda: target.xlen(stream) >= 2 * half, timeout=40, message=f"{2 * half} entries")
    api.post(f"/consumers/{cid}/stop/")  # a warm stop commits what was delivered
    wait_for(lambda: committed_offsets(runtime.bootstrap, group, topic) == highs, timeout=30,
             message="every offset committed")
    app.extensions[EXTENSION].close()

    entries = _entries(target, stream)
    assert len(entries) == 2 * half, f"{len(entries)} entries: a redelivery was appended again"
    assert sorted(int(e["value"]) for e in entries) == list(range(2 * half))
    assert before < half, f"{before} offsets were committed before the kill: nothing was redelivered"
