"""on_error policies through Pipeline with a real consumer, real Redis (rq) and the third-party test plugin."""
from __future__ import annotations

import pytest
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry

from processors import registry
from processors.base import FatalError
from processors.context import ProcessorContext
from processors.pipeline import Pipeline
from schema import keys
from schema.settings import Settings
from schema.spec import ProcessorSpec
from tests.integration.processors.conftest import drive
from tests.support.kafka import committed_offsets, produce


def _for(context: ProcessorContext, consumer_id: str, **changes) -> ProcessorContext:
    import dataclasses

    return dataclasses.replace(context, consumer_id=consumer_id, **changes)

POISON_AT = 500
FAST_RETRIES = {"max_retries": 2, "retry_backoff": 0.01, "retry_backoff_max": 0.05}


def _value(i: int) -> bytes:
    return b"POISON-%d" % i if i == POISON_AT else b"ok-%d" % i


def _collector(tmp_path, on_error: str, **extra):
    config = {"path": str(tmp_path / "collected.txt"), "fail_on": "POISON", **FAST_RETRIES, **extra}
    return ProcessorSpec(id="collector-1", processor_type="test_collector", config=config, on_error=on_error)


def _collected_offsets(tmp_path) -> list[int]:
    path = tmp_path / "collected.txt"
    return sorted(int(line.split()[2]) for line in path.read_text().splitlines()) if path.exists() else []


def test_installed_names_include_the_plugin_and_the_builtins():
    registry.refresh()
    names = registry.installed_names()
    assert {"test_collector", "file_sink", "database_sync", "kafka_forward"} <= set(names)


def test_retry_policy_raises_after_retries_and_offsets_stay_before_the_poison(
        kafka_bootstrap, topic_factory, context, tmp_path):
    topic = topic_factory(partitions=1)
    produce(kafka_bootstrap, topic, 1_000, value_fn=_value)
    pipeline = Pipeline.build([_collector(tmp_path, "retry")], context=_for(context, "c-retry"))
    pipeline.open()
    with pytest.raises(Exception, match="poison message"):
        drive(kafka_bootstrap, topic, pipeline, expected=1_000, group="g-retry", batch_size=100)
    pipeline.close()
    committed = committed_offsets(kafka_bootstrap, "g-retry", topic)[0]
    assert 0 < committed <= POISON_AT
    assert _collected_offsets(tmp_path) == list(range(committed))
    assert pipeline.stats["collector-1"]["retries"] == 2


def test_skip_policy_delivers_everything_else_and_counts_the_skip(kafka_bootstrap, topic_factory, context,
                                                                 tmp_path):
    topic = topic_factory(partitions=1)
    produce(kafka_bootstrap, topic, 1_000, value_fn=_value)
    pipeline = Pipeline.build([_collector(tmp_path, "skip")], context=_for(context, "c-skip"))
    pipeline.open()
    drive(kafka_bootstrap, topic, pipeline, expected=1_000, group="g-skip", batch_size=100)
    pipeline.close()
    assert _collected_offsets(tmp_path) == [i for i in range(1_000) if i != POISON_AT]
    assert pipeline.stats["collector-1"]["skipped"] == 1
    assert committed_offsets(kafka_bootstrap, "g-skip", topic)[0] == 1_000


def _registered(pg_engine, topic: str, spec: ProcessorSpec) -> tuple[str, ProcessorSpec]:
    """The consumer and processor rows the API would have written (a replay reads the processor's row)."""
    import dataclasses

    from schema.db import make_session_factory
    from schema.models import Consumer, DownstreamProcessor

    with make_session_factory(pg_engine)() as session, session.begin():
        consumer = Consumer(bootstrap_servers=["127.0.0.1:19092"], topic=topic, consumer_group="g-dl")
        row = DownstreamProcessor(processor_type=spec.processor_type, config=spec.config, on_error=spec.on_error)
        consumer.downstream_processors.append(row)
        session.add(consumer)
    return str(consumer.id), dataclasses.replace(spec, id=str(row.id))


def test_dead_letter_policy_isolates_the_poison_and_rq_keeps_it_failed_after_retries(
        kafka_bootstrap, topic_factory, context, tmp_path, redis_client, pg_url, pg_engine, pg_clean, monkeypatch):
    monkeypatch.setenv("KCM_DATABASE_URL", pg_url)  # the rq worker's view of kcm's database
    topic = topic_factory(partitions=1)
    produce(kafka_bootstrap, topic, 1_000, value_fn=_value)
    consumer_id, spec = _registered(pg_engine, topic, _collector(
        tmp_path, "dead_letter", dead_letter_max_retries=2, dead_letter_retry_intervals=[0]))
    pipeline = Pipeline.build([spec], context=_for(context, consumer_id, topic=topic))
    pipeline.open()
    drive(kafka_bootstrap, topic, pipeline, expected=1_000, group="g-dl", batch_size=100)
    pipeline.close()

    assert _collected_offsets(tmp_path) == [i for i in range(1_000) if i != POISON_AT]
    assert committed_offsets(kafka_bootstrap, "g-dl", topic)[0] == 1_000
    job_ids = [j.decode() for j in redis_client.zrange(keys.dead_letter_index(consumer_id), 0, -1)]
    assert len(job_ids) == 1
    queue = Queue(keys.DEAD_LETTER_QUEUE, connection=redis_client)
    job = queue.fetch_job(job_ids[0])
    context_meta = job.meta["dead_letter"]
    assert context_meta["offset"] == POISON_AT and context_meta["partition"] == 0 and context_meta["topic"] == topic
    assert context_meta["processor_id"] == spec.id and context_meta["processor_type"] == "test_collector"
    assert context_meta["error_class"].endswith("RetriableError") and "poison" in context_meta["error_message"]
    assert context_meta["consumer_id"] == consumer_id and context_meta["attempts"] >= 3 and context_meta["failed_at"]
    assert job.args[0]["bootstrap_servers"] == kafka_bootstrap and job.args[0]["topic"] == topic

    # the cause is in the plugin's config, so every rq retry fails: the job ends in rq's failed registry
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    assert job_ids[0] in FailedJobRegistry(queue=queue).get_job_ids()
    assert redis_client.zscore(keys.dead_letter_index(consumer_id), job_ids[0]) is not None
    assert POISON_AT not in _collected_offsets(tmp_path)
    history = queue.fetch_job(job_ids[0]).meta["dead_letter"]["history"]
    assert [entry["event"] for entry in history] == ["dead_lettered"] + ["delivery_failed"] * 3  # 1 + 2 retries


def test_dead_letter_payload_over_the_cap_is_refused_with_a_fatal_error(context, tmp_path):
    from processors.base import Record

    settings = Settings.from_env({"KCM_DEAD_LETTER_MAX_BYTES": "100"})
    small_cap = _for(context, "c-cap", settings=settings)
    pipeline = Pipeline.build([_collector(tmp_path, "dead_letter")], context=small_cap)
    pipeline.open()
    with pytest.raises(FatalError, match="KCM_DEAD_LETTER_MAX_BYTES"):
        pipeline.deliver([Record("t", 0, 0, b"POISON" + b"x" * 200)])
    pipeline.close()
    assert context.redis.zcard(keys.dead_letter_index("c-cap")) == 0


def test_fatal_error_at_open_is_not_retried(context, tmp_path):
    spec = ProcessorSpec(id="p", processor_type="test_collector",
                         config={"path": str(tmp_path / "x"), "fail_open": True})
    pipeline = Pipeline.build([spec], consumer_id="c", context=context)
    with pytest.raises(FatalError):
        pipeline.open()


def test_unknown_type_and_bad_policy_are_fatal_at_build(context, tmp_path):
    with pytest.raises(FatalError, match="Did you mean 'file_sink'"):
        Pipeline.build([ProcessorSpec(id="p", processor_type="file_snk")], consumer_id="c", context=context)
    with pytest.raises(FatalError, match="max_retries"):
        Pipeline.build([ProcessorSpec(id="p", processor_type="test_collector",
                                      config={"path": str(tmp_path / "x"), "max_retries": -1})],
                       consumer_id="c", context=context)
    with pytest.raises(FatalError, match="on_error"):
        Pipeline.build([ProcessorSpec(id="p", processor_type="test_collector",
                                      config={"path": str(tmp_path / "x")}, on_error="explode")],
                       consumer_id="c", context=context)
