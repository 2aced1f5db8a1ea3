"""Fixtures for the processor tests: a context like the worker's, and a real consumer loop over a Pipeline."""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from processors.context import ProcessorContext
from schema.settings import Settings


@pytest.fixture
def sink_root(tmp_path, monkeypatch):
    root = tmp_path / "sink"
    root.mkdir()
    # the contexts below take the root from Settings.from_env(), as the worker's settings would
    monkeypatch.setenv("KCM_FILE_SINK_ROOT", str(root))
    return root


def worker_context(settings: Settings, redis=None, *, consumer_id: str = "c-test", bootstrap: str = "",
                   security: dict | None = None) -> ProcessorContext:
    """The ProcessorContext a worker builds for replica 0 of a consumer."""
    return ProcessorContext(settings=settings, consumer_id=consumer_id,
                            bootstrap_servers=bootstrap or settings.kafka_bootstrap, security=security or {},
                            topic="", replica=0, redis=redis)


@pytest.fixture
def context(sink_root, redis_client):
    return worker_context(Settings.from_env(), redis_client)


def drive(bootstrap: str, topic: str, pipeline, *, expected: int, group: str | None = None,
          batch_size: int = 1000, timeout: float = 120) -> tuple[str, int]:
    """Consume ``topic`` through ``pipeline`` the way the worker does: deliver a batch, then commit its
    offsets synchronously; seek to the pipeline's own offsets on assignment. Returns (group, delivered)."""
    group = group or f"kcm-proc-{uuid.uuid4().hex[:10]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": False})

    def on_assign(c, partitions):
        own = pipeline.committed_offsets([(tp.topic, tp.partition) for tp in partitions])
        for tp in partitions:
            if (tp.topic, tp.partition) in own:
                tp.offset = own[(tp.topic, tp.partition)]
        c.assign(partitions)

    consumer.subscribe([topic], on_assign=on_assign)
    delivered = 0
    deadline = time.monotonic() + timeout
    try:
        while delivered < expected and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=batch_size, timeout=0.5)
            for m in batch:
                if m.error() and m.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(m.error())
            batch = [m for m in batch if not m.error()]
            if not batch:
                continue
            pipeline.deliver(batch)
            positions: dict[tuple[str, int], int] = {}
            for m in batch:
                positions[(m.topic(), m.partition())] = m.offset() + 1
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()],
                            asynchronous=False)
            delivered += len(batch)
    finally:
        consumer.close()
    return group, delivered


@pytest.fixture
def pg_context(pg_url, sink_root, redis_client, monkeypatch):
    """A worker-like context whose kcm database is the migrated PostgreSQL test database."""
    monkeypatch.setenv("KCM_DATABASE_URL", pg_url)
    return worker_context(Settings.from_env(), redis_client)


@pytest.fixture
def pg_conn(pg_url):
    """A psycopg2 connection (autocommit) to the test database for assertions."""
    import psycopg2
    from sqlalchemy.engine import make_url

    conn = psycopg2.connect(make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False))
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture
def sync_table(pg_conn):
    """A unique target table name, dropped after the test (with this table's kcm_offsets rows)."""
    name = f"sync_{uuid.uuid4().hex[:10]}"
    yield name
    with pg_conn.cursor() as cur:
        cur.execute(f'DROP TABLE IF EXISTS "{name}", "{name}_audit"')
        cur.execute(f'DROP FUNCTION IF EXISTS "{name}_audit_fn"()')
        cur.execute("DELETE FROM kcm_offsets")
