"""database_sync's generic (SQLAlchemy Core) path on a real SQLite file: kcm's embedded state database, or any
database a ``dsn`` reference names that is not PostgreSQL."""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer

from processors.base import Record, RetriableError
from processors.database_sql import insert_new_only, offsets_table, store_offsets, target_table
from processors.pipeline import Pipeline
from schema.settings import Settings
from schema.spec import ProcessorSpec
from tests.integration.processors.conftest import drive, worker_context
from tests.support.kafka import committed_offsets, produce

FAST = {"max_retries": 0, "retry_backoff": 0.01, "retry_backoff_max": 0.05}


@pytest.fixture
def sqlite_context(sqlite_url, sink_root, redis_client):
    """A worker's context whose kcm database is a migrated SQLite file (the ``make run`` default)."""
    return worker_context(dataclasses.replace(Settings.from_env(), database_url=sqlite_url), redis_client,
                          consumer_id="c-sqlite")


def _sqlite_file(url: str) -> str:
    return url.removeprefix("sqlite:///")


def _query(url: str, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(_sqlite_file(url)) as conn:
        return conn.execute(sql, args).fetchall()


def _open(context, on_error="retry", **config) -> Pipeline:
    spec = ProcessorSpec(id="db-sqlite", processor_type="database_sync", config={**FAST, **config}, on_error=on_error)
    pipeline = Pipeline.build([spec], context=context)
    pipeline.open()
    return pipeline


def test_empty_config_writes_kcm_messages_in_kcms_own_sqlite_and_a_redelivery_adds_nothing(sqlite_context,
                                                                                        sqlite_url):
    pipeline = _open(sqlite_context)
    assert pipeline.stages[0][1]._sql is not None  # not the COPY path
    batch = [Record("orders", p, i, b"v%d" % i, key_=b"k%d" % i, headers_=(("h", b"x"),),
                    timestamp_=(1, 1_700_000_000_123)) for p in (0, 1) for i in range(50)]
    pipeline.deliver(batch)
    pipeline.deliver(batch[25:75])  # redelivered after a crash: no duplicate, no error
    pipeline.close()
    assert _query(sqlite_url, "SELECT partition, count(*), min(\"offset\"), max(\"offset\") FROM kcm_messages "
                              "GROUP BY partition") == [(0, 50, 0, 49), (1, 50, 0, 49)]
    ((key, value, headers, stamp),) = _query(sqlite_url, "SELECT key, value, headers, \"timestamp\" FROM kcm_messages "
                                                         "WHERE partition = 1 AND \"offset\" = 7")
    assert (key, value) == (b"k7", b"v7")
    assert json.loads(headers) == [{"key": "h", "value": "x"}]
    assert stamp.startswith("2023-11-14 22:13:20.123")


def test_json_and_text_values_are_stored_as_text(sqlite_context, sqlite_url):
    for value_format, table in (("json", "events_json"), ("text", "events_text")):
        pipeline = _open(sqlite_context, table=table, create_table=True, value_format=value_format)
        pipeline.deliver([Record("t", 0, 0, '{"n": 1, "s": "é"}'.encode()), Record("t", 0, 1, None)])
        pipeline.close()
        assert _query(sqlite_url, f'SELECT value FROM {table} ORDER BY "offset"') == [('{"n": 1, "s": "é"}',), (None,)]
    assert _query(sqlite_url, "SELECT json_extract(value, '$.n') FROM events_json WHERE \"offset\" = 0") == [(1,)]


@pytest.mark.parametrize("on_error", ["skip", "dead_letter"])
def test_a_value_that_is_not_json_is_a_poison_message_isolated_by_on_error(on_error, sqlite_context, sqlite_url):
    pipeline = _open(sqlite_context, on_error, value_format="json", dead_letter_retry_intervals=[0])
    values = [b'{"n": %d}' % i for i in range(10)]
    values[3], values[8] = b"not json", b"NaN"  # NaN: Python's json accepts it, PostgreSQL's jsonb does not
    pipeline.deliver([Record("t", 0, i, v) for i, v in enumerate(values)])
    pipeline.close()
    assert [r[0] for r in _query(sqlite_url, 'SELECT "offset" FROM kcm_messages ORDER BY 1')] == [
        0, 1, 2, 4, 5, 6, 7, 9]
    stats = pipeline.stats["db-sqlite"]
    assert (stats["skipped"] if on_error == "skip" else stats["dead_lettered"]) == 2


def test_invalid_utf8_is_a_poison_message_for_text(sqlite_context, sqlite_url):
    pipeline = _open(sqlite_context, "skip", table="t_text", create_table=True, value_format="text")
    pipeline.deliver([Record("t", 0, 0, b"ok"), Record("t", 0, 1, b"\xff\xfe"), Record("t", 0, 2, b"fine")])
    pipeline.close()
    assert _query(sqlite_url, 'SELECT "offset", value FROM t_text ORDER BY 1') == [(0, "ok"), (2, "fine")]


def test_a_sqlite_url_behind_a_dsn_reference_takes_the_generic_path(context, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'target.db'}"
    monkeypatch.setenv("KCM_SECRET_TEST_SQLITE_DSN", url)
    pipeline = _open(context, table="events", create_table=True, dsn="${env:KCM_SECRET_TEST_SQLITE_DSN}")
    pipeline.deliver([Record("t", 0, i, b"x") for i in range(3)])
    pipeline.close()
    assert _query(url, "SELECT count(*) FROM events") == [(3,)]


def test_a_write_lock_held_elsewhere_is_retried_until_it_is_released(sqlite_context, sqlite_url):
    """The API and the supervisor write kcm's SQLite file too: "database is locked" is retriable."""
    pipeline = _open(sqlite_context, connect_timeout=1, max_retries=50, retry_timeout=60, retry_backoff=0.05,
                     retry_backoff_max=0.2)
    holder = sqlite3.connect(_sqlite_file(sqlite_url), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(2.5, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        pipeline.deliver([Record("t", 0, i, b"x") for i in range(10)])
    finally:
        release.join()
        holder.close()
    pipeline.close()
    assert pipeline.stats["db-sqlite"]["retries"] >= 1
    assert _query(sqlite_url, "SELECT count(*) FROM kcm_messages") == [(10,)]


def test_a_locked_database_fails_the_flush_with_a_retriable_error(sqlite_context, sqlite_url):
    pipeline = _open(sqlite_context, connect_timeout=1)
    processor = pipeline.stages[0][1]
    holder = sqlite3.connect(_sqlite_file(sqlite_url), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        processor.process([Record("t", 0, 0, b"x")])
        with pytest.raises(RetriableError, match="database is locked"):
            processor.flush()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    pipeline.close()


def test_exactly_once_resumes_from_its_own_offsets_on_sqlite(kafka_bootstrap, topic_factory, sqlite_context,
                                                             sqlite_url):
    topic = topic_factory(partitions=2)
    produce(kafka_bootstrap, topic, 2_000)
    pipeline = _open(sqlite_context, exactly_once=True)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "g-eo-sqlite",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    written = 0
    while written < 700:  # the sink writes, then the worker "crashes" before Kafka's commit
        batch = [m for m in consumer.consume(300, timeout=1) if not m.error()]
        if batch:
            pipeline.deliver(batch)
            written += len(batch)
    consumer.close()
    pipeline.close()
    assert committed_offsets(kafka_bootstrap, "g-eo-sqlite", topic) == {0: -1001, 1: -1001}

    restarted = _open(sqlite_context, exactly_once=True)
    own = restarted.committed_offsets([(topic, 0), (topic, 1)])
    assert sum(own.values()) == written
    _group, delivered = drive(kafka_bootstrap, topic, restarted, expected=2_000 - written, group="g-eo-sqlite")
    restarted.close()
    assert delivered == 2_000 - written  # nothing read twice
    assert _query(sqlite_url, 'SELECT count(*), count(DISTINCT partition || \'/\' || "offset") FROM kcm_messages') == [
        (2_000, 2_000)]
    assert _query(sqlite_url, "SELECT sum(next_offset) FROM kcm_offsets WHERE consumer_id = 'c-sqlite'") == [(2_000,)]


def test_the_portable_fallback_inserts_only_new_offsets_and_offsets_never_move_back(tmp_path):
    """The path of a dialect without an insert-or-ignore of its own, run here on SQLite."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'fallback.db'}")
    metadata = sa.MetaData()
    table, offsets = target_table(metadata, "events", "bytea"), offsets_table(metadata)
    metadata.create_all(engine)

    def rows(partition, span):
        return [{"topic": "t", "partition": partition, "offset": i, "key": None, "value": b"v%d" % i,
                 "headers": None, "timestamp": None} for i in span]

    with engine.begin() as conn:
        insert_new_only(conn, table, rows(0, range(0, 10)))
        insert_new_only(conn, table, rows(0, range(5, 15)) + rows(1, range(0, 3)))
        store_offsets(conn, offsets, "c", "p", {("t", 0): 15, ("t", 1): 3})
        store_offsets(conn, offsets, "c", "p", {("t", 0): 12})  # an older batch: ignored
    with engine.connect() as conn:
        stored = conn.execute(sa.select(table.c.partition, sa.func.count()).group_by(table.c.partition)).all()
        next_offsets = conn.execute(sa.select(offsets.c.partition, offsets.c.next_offset)
                                    .order_by(offsets.c.partition)).all()
    engine.dispose()
    assert [tuple(r) for r in stored] == [(0, 15), (1, 3)]
    assert [tuple(r) for r in next_offsets] == [(0, 15), (1, 3)]
