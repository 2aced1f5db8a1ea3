"""Fixtures over the real services started by `make services` (deploy/local/services.sh).

A test that needs a service fails, never skips, when the service is missing: an integration test that
cannot reach Kafka, PostgreSQL or Redis reports the missing setting and how to start the stack.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOW = "start the local stack with `make services` and load it with `eval \"$(make -s services-env)\"`"


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}unit{os.sep}" in path:
            item.add_marker(pytest.mark.unit)
        elif f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.integration)


def _required_env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.fail(f"{name} is not set: {HOW}", pytrace=False)
    return value


# ------------------------------------------------------------------ Kafka
@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    from confluent_kafka.admin import AdminClient

    bootstrap = _required_env("KCM_KAFKA_BOOTSTRAP")
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})
    try:
        admin.list_topics(timeout=10)
    except Exception as exc:
        pytest.fail(f"Kafka at {bootstrap} is unreachable ({exc}): {HOW}", pytrace=False)
    return bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def topic_factory(kafka_admin):
    """Create a unique topic per call (``topic_factory(partitions=3)``); deleted after the test."""
    from confluent_kafka.admin import NewTopic

    created: list[str] = []

    def make(partitions: int = 1, prefix: str = "kcm-test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        futures = kafka_admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        futures[name].result(30)
        created.append(name)
        _wait_topic_ready(kafka_admin, name, partitions)
        return name

    yield make
    if created:
        for future in kafka_admin.delete_topics(created, operation_timeout=30).values():
            try:
                future.result(30)
            except Exception:
                pass


def _wait_topic_ready(admin, name: str, partitions: int) -> None:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(name, timeout=10).topics.get(name)
        if md and not md.error and len(md.partitions) == partitions and all(
            p.leader >= 0 for p in md.partitions.values()
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {name} did not get leaders for {partitions} partitions in 30 s")


# ------------------------------------------------------------------ PostgreSQL
@pytest.fixture(scope="session")
def pg_url() -> str:
    """A migrated PostgreSQL test database (created if absent, dropped and re-created each session)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from schema.migrate import upgrade

    url = _required_env("KCM_TEST_DATABASE_URL")
    parsed = make_url(url)
    admin_engine = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin_engine.connect() as conn:
            conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
            ), {"d": parsed.database})
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{parsed.database}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{parsed.database}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {parsed.render_as_string(hide_password=True)} is unreachable "
                    f"({exc.orig}): {HOW}", pytrace=False)
    finally:
        admin_engine.dispose()
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def pg_engine(pg_url):
    from schema.db import make_engine

    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_clean(pg_engine):
    """Empty kcm's tables after the test (the schema stays migrated)."""
    import sqlalchemy as sa

    yield pg_engine
    with pg_engine.begin() as conn:
        tables = [r[0] for r in conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'"))]
        if tables:
            conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    from schema.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'kcm.sqlite3'}"
    upgrade(url)
    return url


# ------------------------------------------------------------------ Redis
@pytest.fixture(scope="session")
def redis_test_url() -> str:
    """KCM_REDIS_URL with the test DB index (KCM_TEST_REDIS_DB, default 15) so tests never touch db 0."""
    import redis

    base = _required_env("KCM_REDIS_URL")
    db = int(os.environ.get("KCM_TEST_REDIS_DB", "15"))
    url = base.rsplit("/", 1)[0] + f"/{db}" if base.count("/") > 2 else f"{base}/{db}"
    try:
        redis.Redis.from_url(url, socket_timeout=5).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {base} is unreachable ({exc}): {HOW}", pytrace=False)
    return url


@pytest.fixture
def redis_client(redis_test_url):
    """A real Redis connection on the test DB index, flushed before and after each test."""
    import redis

    client = redis.Redis.from_url(redis_test_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
