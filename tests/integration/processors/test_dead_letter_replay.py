"""A dead-letter replay reaches the consumer's own cluster and uses the processor's current configuration.

The rq job runs in a real ``SimpleWorker`` over the real Redis, reads the processor row from the real
PostgreSQL (the rq worker's ``KCM_DATABASE_URL``) and delivers to the real Kafka or file system. The dead
letter is sent as the worker's pipeline sends it: ``DeadLetterQueue(ProcessorContext.for_worker(...))``.
"""
from __future__ import annotations

import pytest
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import FailedJobRegistry

from processors.base import Record
from processors.context import ProcessorContext
from processors.dead_letters import DeadLetterQueue
from processors.policy import DeliveryPolicy
from schema import keys
from schema.db import make_session_factory
from schema.models import Consumer, DownstreamProcessor
from schema.settings import Settings
from schema.spec import ProcessorSpec, WorkerSpec
from tests.support.kafka import consume_all

DEAD_CLUSTER = "127.0.0.1:1"  # nothing listens here: a replay that falls back to it never arrives


@pytest.fixture
def kcm_db(pg_url, pg_engine, pg_clean, monkeypatch):
    """kcm's database as the rq worker sees it (``KCM_DATABASE_URL``), and a session factory over it."""
    monkeypatch.setenv("KCM_DATABASE_URL", pg_url)
    return make_session_factory(pg_engine)


def _consumer(sessions, bootstrap: str, topic: str, processor_type: str, config: dict) -> Consumer:
    with sessions() as session, session.begin():
        consumer = Consumer(bootstrap_servers=[bootstrap], topic=topic, consumer_group=f"g-{topic}",
                            replicas=1, generation=1)
        consumer.downstream_processors.append(DownstreamProcessor(
            processor_type=processor_type, config=config, position=0, on_error="dead_letter"))
        session.add(consumer)
    with sessions() as session:
        consumer = session.get(Consumer, consumer.id)
        list(consumer.downstream_processors)
        return consumer


def _dead_letter(consumer: Consumer, redis_client, value: bytes, *, retries: int = 0, offset: int = 7) -> str:
    """What the worker's pipeline does when it gives up on a message under on_error=dead_letter."""
    spec = WorkerSpec.from_consumer(consumer, 0)
    context = ProcessorContext.for_worker(spec, Settings.from_env(), redis_client)
    policy = DeliveryPolicy(on_error="dead_letter", dead_letter_max_retries=retries,
                            dead_letter_retry_intervals=(0,))
    return DeadLetterQueue(context).send(spec.processors[0], policy, Record(consumer.topic, 0, offset, value),
                                         RuntimeError("target down"), 3)


def _run_rq(redis_client) -> None:
    SimpleWorker([Queue(keys.DEAD_LETTER_QUEUE, connection=redis_client)], connection=redis_client).work(burst=True)


def _history(redis_client, job_id: str) -> list[dict]:
    return Job.fetch(job_id, connection=redis_client).meta["dead_letter"]["history"]


def test_replayed_kafka_forward_lands_on_the_consumers_cluster_not_the_rq_workers(
        kafka_bootstrap, topic_factory, kcm_db, redis_client, monkeypatch):
    source, target = topic_factory(partitions=1), topic_factory(partitions=1)
    consumer = _consumer(kcm_db, kafka_bootstrap, source, "kafka_forward",
                         {"topic": target, "delivery_timeout_ms": 5000})
    job_id = _dead_letter(consumer, redis_client, b"replay-me")
    envelope = Job.fetch(job_id, connection=redis_client).args[0]
    assert envelope["bootstrap_servers"] == kafka_bootstrap and envelope["topic"] == source

    monkeypatch.setenv("KCM_KAFKA_BOOTSTRAP", DEAD_CLUSTER)  # the rq worker's own default cluster is dead
    _run_rq(redis_client)

    (message,) = consume_all(kafka_bootstrap, target, f"check-{target}", 1, timeout=30)
    assert message.value() == b"replay-me"
    job = Job.fetch(job_id, connection=redis_client)
    assert job.get_status().value == "finished"
    assert redis_client.zscore(keys.dead_letter_index(str(consumer.id)), job_id) is None
    events = [entry["event"] for entry in _history(redis_client, job_id)]
    assert events == ["dead_lettered", "delivered"]


def test_a_replay_uses_the_file_sink_path_corrected_after_dead_lettering(kcm_db, redis_client, sink_root):
    (sink_root / "blocked").write_text("a file where the sink wants a directory\n")
    consumer = _consumer(kcm_db, "127.0.0.1:19092", "orders", "file_sink", {"path": "blocked/out.log"})
    job_id = _dead_letter(consumer, redis_client, b"line-7")
    _run_rq(redis_client)  # the configured path cannot work: the job fails, as the pipeline's attempts did
    assert job_id in FailedJobRegistry(queue=Queue(keys.DEAD_LETTER_QUEUE, connection=redis_client)).get_job_ids()

    processor_id = consumer.downstream_processors[0].id
    with kcm_db() as session, session.begin():  # the operator fixes the processor's config through the API
        row = session.get(DownstreamProcessor, processor_id)
        row.config = {"path": "fixed/out.log"}
    with kcm_db() as session:
        updated_at = session.get(DownstreamProcessor, processor_id).updated_at

    FailedJobRegistry(queue=Queue(keys.DEAD_LETTER_QUEUE, connection=redis_client)).requeue(job_id)
    _run_rq(redis_client)

    assert (sink_root / "fixed" / "out.log").read_bytes() == b"line-7\n"
    history = _history(redis_client, job_id)
    assert [entry["event"] for entry in history] == ["dead_lettered", "delivery_failed", "delivered"]
    assert "current configuration" in history[-1]["detail"]
    assert updated_at.isoformat()[:19] in history[-1]["detail"]
    assert all(entry["at"].endswith("+00:00") for entry in history)  # ISO-8601, UTC


def test_a_replay_whose_processor_was_deleted_fails_at_once_without_retries(kcm_db, redis_client, tmp_path):
    consumer = _consumer(kcm_db, "127.0.0.1:19092", "orders", "test_collector", {"path": str(tmp_path / "out")})
    job_id = _dead_letter(consumer, redis_client, b"orphan", retries=3)
    with kcm_db() as session, session.begin():
        session.delete(session.get(DownstreamProcessor, consumer.downstream_processors[0].id))

    _run_rq(redis_client)  # with intervals of 0 s, rq would run all 3 retries within this burst

    assert job_id in FailedJobRegistry(queue=Queue(keys.DEAD_LETTER_QUEUE, connection=redis_client)).get_job_ids()
    history = _history(redis_client, job_id)
    assert [entry["event"] for entry in history] == ["dead_lettered", "delivery_failed"]
    assert "no longer exists" in history[-1]["detail"] and "not retried" in history[-1]["detail"]
    assert not (tmp_path / "out").exists()


def test_a_processor_of_another_consumer_is_not_delivered_to(kcm_db, redis_client, tmp_path):
    consumer = _consumer(kcm_db, "127.0.0.1:19092", "orders", "test_collector", {"path": str(tmp_path / "a")})
    other = _consumer(kcm_db, "127.0.0.1:19092", "payments", "test_collector", {"path": str(tmp_path / "b")})
    spec = WorkerSpec.from_consumer(consumer, 0)
    context = ProcessorContext.for_worker(spec, Settings.from_env(), redis_client)
    foreign = ProcessorSpec(id=str(other.downstream_processors[0].id), processor_type="test_collector")
    job_id = DeadLetterQueue(context).send(foreign, DeliveryPolicy(on_error="dead_letter", dead_letter_max_retries=0),
                                           Record("orders", 0, 1, b"x"), RuntimeError("down"), 1)
    _run_rq(redis_client)
    assert "no longer exists" in _history(redis_client, job_id)[-1]["detail"]
    assert not (tmp_path / "b").exists()
