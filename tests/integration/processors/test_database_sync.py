"""database_sync against the real PostgreSQL, driven by a real consumer through Pipeline."""
from __future__ import annotations

import dataclasses
import json
import threading

import pytest
from marshmallow import ValidationError
from rq import Queue, SimpleWorker

from processors.base import FatalError, Record
from processors.database_sync import DatabaseSyncProcessor
from processors.pipeline import Pipeline
from schema import keys
from schema.spec import ProcessorSpec
from tests.integration.processors.conftest import drive
from tests.support.kafka import committed_offsets, produce

FAST = {"max_retries": 2, "retry_backoff": 0.01, "retry_backoff_max": 0.05}


def _spec(table, on_error="retry", **config):
    return ProcessorSpec(id="db-1", processor_type="database_sync",
                         config={"table": table, "create_table": True, **config}, on_error=on_error)


def _open(specs, context, consumer_id="c-db"):
    pipeline = Pipeline.build(specs, context=dataclasses.replace(context, consumer_id=consumer_id))
    pipeline.open()
    return pipeline


def _rows(pg_conn, table, what="count(*)", tail=""):
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT {what} FROM "{table}" {tail}')
        return cur.fetchall()


def _assert_complete(pg_conn, table, total):
    (count, distinct), = _rows(pg_conn, table, 'count(*), count(DISTINCT (partition, "offset"))')
    assert count == distinct == total
    for partition, n, low, high in _rows(pg_conn, table, 'partition, count(*), min("offset"), max("offset")',
                                                         "GROUP BY partition"):
        assert low == 0 and high == n - 1, f"partition {partition} has gaps"


def test_100k_messages_land_once_each_as_jsonb(kafka_bootstrap, topic_factory, pg_context, pg_conn, sync_table):
    topic = topic_factory(partitions=4)
    produce(kafka_bootstrap, topic, 100_000, value_fn=lambda i: b'{"i": %d}' % i)
    pipeline = _open([_spec(sync_table, value_format="json")], pg_context)
    try:
        _group, delivered = drive(kafka_bootstrap, topic, pipeline, expected=100_000)
    finally:
        pipeline.close()
    assert delivered == 100_000
    _assert_complete(pg_conn, sync_table, 100_000)
    (total,), = _rows(pg_conn, sync_table, "sum((value->>'i')::bigint)")
    assert total == sum(range(100_000))
    (key, ts), = _rows(pg_conn, sync_table, "convert_from(key, 'UTF8'), \"timestamp\" IS NOT NULL",
                                            "WHERE value->>'i' = '42'")
    assert key == "k42" and ts


def test_redelivered_batch_is_a_no_op_and_headers_are_kept(pg_context, pg_conn, sync_table):
    pipeline = _open([_spec(sync_table, value_format="text")], pg_context)
    batch = [Record("t", 0, i, b"v%d" % i, headers_=(("h", b"x\ty"),), timestamp_=(1, 1_700_000_000_000))
             for i in range(10)]
    pipeline.deliver(batch)
    pipeline.deliver(batch)
    pipeline.close()
    assert _rows(pg_conn, sync_table) == [(10,)]
    (headers,), = _rows(pg_conn, sync_table, "headers", 'WHERE "offset" = 3')
    assert headers == [{"key": "h", "value": "x\ty"}]


def _poison_table(pg_conn, table):
    from processors.database_target import target_ddl

    # the table must exist before the constraint: create it with the documented DDL
    with pg_conn.cursor() as cur:
        cur.execute(target_ddl(f'"{table}"', "text"))
        cur.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT no_poison CHECK (value NOT LIKE \'POISON%\')')


def _poison_value(i: int) -> bytes:
    return b"POISON-%d" % i if i == 500 else b"ok-%d" % i


def test_constraint_violation_with_retry_stops_before_the_poison(kafka_bootstrap, topic_factory, pg_context,
                                                                 pg_conn, sync_table):
    _poison_table(pg_conn, sync_table)
    topic = topic_factory(partitions=1)
    produce(kafka_bootstrap, topic, 1_000, value_fn=_poison_value)
    pipeline = _open([_spec(sync_table, value_format="text", **FAST)], pg_context)
    with pytest.raises(Exception, match="no_poison"):
        drive(kafka_bootstrap, topic, pipeline, expected=1_000, group="g-db-retry", batch_size=100)
    pipeline.close()
    committed = committed_offsets(kafka_bootstrap, "g-db-retry", topic)[0]
    assert 0 < committed <= 500
    assert _rows(pg_conn, sync_table, 'max("offset") + 1, count(*)') == [(committed, committed)]


def _stored(pg_engine, spec: ProcessorSpec, topic: str) -> tuple[ProcessorSpec, str]:
    """The consumer and processor rows kcm's database holds for ``spec``: the spec with the row's id."""
    from schema.db import make_session_factory
    from schema.models import Consumer, DownstreamProcessor

    with make_session_factory(pg_engine)() as session, session.begin():
        consumer = Consumer(bootstrap_servers=["127.0.0.1:1"], topic=topic, consumer_group="g-db-dl")
        row = DownstreamProcessor(processor_type=spec.processor_type, config=dict(spec.config),
                                  on_error=spec.on_error, position=0)
        consumer.downstream_processors.append(row)
        session.add(consumer)
    return dataclasses.replace(spec, id=str(row.id)), str(consumer.id)


def test_dead_letter_isolates_the_poison_row_and_replay_after_the_fix_delivers_it(
        kafka_bootstrap, topic_factory, pg_context, pg_conn, sync_table, redis_client, pg_engine, pg_clean):
    _poison_table(pg_conn, sync_table)
    topic = topic_factory(partitions=1)
    produce(kafka_bootstrap, topic, 1_000, value_fn=_poison_value)
    spec = _spec(sync_table, "dead_letter", value_format="text", dead_letter_retry_intervals=[0], **FAST)
    spec, consumer_id = _stored(pg_engine, spec, topic)  # a replay delivers to the processor as kcm stores it
    pipeline = _open([spec], pg_context, consumer_id=consumer_id)
    drive(kafka_bootstrap, topic, pipeline, expected=1_000, group="g-db-dl", batch_size=250)
    pipeline.close()

    assert _rows(pg_conn, sync_table) == [(999,)]
    assert _rows(pg_conn, sync_table, "count(*)", 'WHERE "offset" = 500') == [(0,)]
    assert committed_offsets(kafka_bootstrap, "g-db-dl", topic)[0] == 1_000
    (job_id,) = [j.decode() for j in redis_client.zrange(keys.dead_letter_index(consumer_id), 0, -1)]
    queue = Queue(keys.DEAD_LETTER_QUEUE, connection=redis_client)
    meta = queue.fetch_job(job_id).meta["dead_letter"]
    assert (meta["topic"], meta["partition"], meta["offset"]) == (topic, 0, 500)
    assert meta["error_class"] == "processors.base.PoisonMessageError" and "no_poison" in meta["error_message"]
    assert meta["processor_type"] == "database_sync" and meta["processor_id"] == spec.id

    with pg_conn.cursor() as cur:  # fix the cause, then let rq replay the dead letter
        cur.execute(f'ALTER TABLE "{sync_table}" DROP CONSTRAINT no_poison')
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    assert _rows(pg_conn, sync_table, "convert_from(key, 'UTF8'), value", 'WHERE "offset" = 500') == [
        ("k500", "POISON-500")]
    _assert_complete(pg_conn, sync_table, 1_000)
    assert redis_client.zcard(keys.dead_letter_index(consumer_id)) == 0


def test_non_json_value_is_a_poison_message_for_the_json_format(pg_context, pg_conn, sync_table):
    pipeline = _open([_spec(sync_table, "skip", value_format="json", **FAST)], pg_context)
    pipeline.deliver([Record("t", 0, i, b'{"n": %d}' % i if i != 3 else b"not json") for i in range(8)])
    pipeline.close()
    assert sorted(r[0] for r in _rows(pg_conn, sync_table, '"offset"')) == [0, 1, 2, 4, 5, 6, 7]
    assert pipeline.stats["db-1"]["skipped"] == 1


def test_target_down_then_back_retries_and_loses_nothing(pg_context, pg_conn, sync_table, pg_url, monkeypatch):
    from sqlalchemy.engine import make_url

    real_dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    monkeypatch.setenv("KCM_SECRET_TEST_SYNC_DSN", "postgresql://kcm:kcm@127.0.0.1:1/none")  # a closed port
    spec = _spec(sync_table, dsn="${env:KCM_SECRET_TEST_SYNC_DSN}", max_retries=50, retry_timeout=60,
                 retry_backoff=0.05, retry_backoff_max=0.3)
    pipeline = _open([spec], pg_context)  # open tolerates a target that is down
    timer = threading.Timer(1.5, lambda: monkeypatch.setenv("KCM_SECRET_TEST_SYNC_DSN", real_dsn))
    timer.start()
    pipeline.deliver([Record("t", 0, i, b"v%d" % i) for i in range(1_000)])
    timer.join()
    assert pipeline.stats["db-1"]["retries"] >= 2
    # the backend is terminated mid-stream: the next batch reconnects
    with pg_conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'kcm-database_sync-%' AND datname = current_database()")
    pipeline.deliver([Record("t", 0, i, b"v%d" % i) for i in range(1_000, 2_000)])
    pipeline.close()
    _assert_complete(pg_conn, sync_table, 2_000)


def test_exactly_once_resumes_from_its_own_offsets_not_kafkas(kafka_bootstrap, topic_factory, pg_context,
                                                             pg_conn, sync_table):
    topic = topic_factory(partitions=2)
    produce(kafka_bootstrap, topic, 4_000)
    spec = _spec(sync_table, exactly_once=True)
    pipeline = _open([spec], pg_context)
    # first run: the sink writes 1,500 messages, then "crashes" before Kafka's commit of any of them
    from confluent_kafka import Consumer
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "g-eo",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    written = 0
    while written < 1_500:
        batch = [m for m in consumer.consume(500, timeout=1) if not m.error()]
        if batch:
            pipeline.deliver(batch)
            written += len(batch)
    consumer.close()
    pipeline.close()
    assert committed_offsets(kafka_bootstrap, "g-eo", topic) == {0: -1001, 1: -1001}  # nothing committed

    restarted = _open([spec], pg_context)
    own = restarted.committed_offsets([(topic, 0), (topic, 1)])
    assert sum(own.values()) == written
    _group, delivered = drive(kafka_bootstrap, topic, restarted, expected=4_000 - written, group="g-eo")
    restarted.close()
    assert delivered == 4_000 - written  # nothing read twice
    _assert_complete(pg_conn, sync_table, 4_000)
    with pg_conn.cursor() as cur:
        cur.execute("SELECT sum(next_offset) FROM kcm_offsets WHERE consumer_id = 'c-db'")
        assert cur.fetchone()[0] == 4_000


def test_missing_table_without_create_table_is_fatal_with_the_ddl_hint(pg_context, sync_table):
    pipeline = Pipeline.build([_spec(sync_table, create_table=False)], consumer_id="c", context=pg_context)
    with pytest.raises(FatalError, match="create_table"):
        pipeline.open()


def test_config_rejects_a_plaintext_dsn_and_odd_table_names():
    with pytest.raises(ValidationError) as info:
        DatabaseSyncProcessor.validate_config({"table": "t", "dsn": "postgresql://u:secret@h/db"})
    assert "dsn" in info.value.messages and "secret" not in json.dumps(info.value.messages)
    with pytest.raises(ValidationError):
        DatabaseSyncProcessor.validate_config({"table": 'x"; DROP TABLE y; --'})


def test_an_empty_config_writes_kcm_messages_created_in_kcms_own_database(pg_context, pg_conn):
    """The design document's ``"config": {}``: the default table, created if missing, in kcm's database."""
    with pg_conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS kcm_messages")
    pipeline = Pipeline.build([ProcessorSpec(id="db-default", processor_type="database_sync", config={})],
                              context=pg_context)
    pipeline.open()
    batch = [Record("orders", 0, i, b"v%d" % i, key_=b"k") for i in range(20)]
    pipeline.deliver(batch)
    pipeline.deliver(batch[10:])  # a redelivery: no duplicate
    pipeline.close()
    try:
        assert _rows(pg_conn, "kcm_messages", 'count(*), min("offset"), max("offset")') == [(20, 0, 19)]
        assert _rows(pg_conn, "kcm_messages", "convert_from(value, 'UTF8')", 'WHERE "offset" = 7') == [("v7",)]
    finally:
        with pg_conn.cursor() as cur:
            cur.execute("DROP TABLE kcm_messages")


@pytest.mark.parametrize("table", ["consumers", "downstream_processors", "alembic_version", "kcm_offsets",
                                   "kcm_changes", "kcm_stage", "public.consumers", "other.kcm_offsets",
                                   "CONSUMERS", '"consumers"', "Public.Downstream_Processors"])
def test_kcms_own_tables_are_never_a_target(table):
    with pytest.raises(ValidationError) as info:
        DatabaseSyncProcessor.validate_config({"table": table})
    assert any("kcm's own tables" in m for m in info.value.messages["table"])


@pytest.mark.parametrize("table", ["kcm_messages", "public.kcm_messages", "events", "analytics.orders",
                                   "consumers_archive", "my_kcm_table"])
def test_other_tables_and_the_default_sink_table_are_accepted(table):
    assert DatabaseSyncProcessor.validate_config({"table": table})["table"] == table


def test_create_table_defaults_to_true_only_for_the_default_table():
    assert DatabaseSyncProcessor.validate_config({})["table"] == "kcm_messages"
    assert DatabaseSyncProcessor.validate_config({})["create_table"] is True
    assert DatabaseSyncProcessor.validate_config({"create_table": False})["create_table"] is False
    assert DatabaseSyncProcessor.validate_config({"table": "events"})["create_table"] is False


@pytest.mark.parametrize("form", ["libpq", "postgresql", "postgresql+psycopg2"])
def test_a_dsn_reference_may_hold_a_libpq_dsn_or_any_postgresql_url(form, pg_context, pg_conn, pg_url, sync_table,
                                                                   monkeypatch):
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    value = {"libpq": f"host={url.host} port={url.port} dbname={url.database} user={url.username} "
                      f"password={url.password}",
             "postgresql": url.set(drivername="postgresql").render_as_string(hide_password=False),
             "postgresql+psycopg2": url.render_as_string(hide_password=False)}[form]
    monkeypatch.setenv("KCM_SECRET_TEST_SYNC_DSN", value)
    pipeline = _open([_spec(sync_table, dsn="${env:KCM_SECRET_TEST_SYNC_DSN}")], pg_context)
    processor = pipeline.stages[0][1]
    pipeline.deliver([Record("t", 0, i, b"x") for i in range(5)])
    pipeline.close()
    assert processor._sql is None  # the COPY path
    assert _rows(pg_conn, sync_table) == [(5,)]
