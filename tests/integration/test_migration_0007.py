"""Migration 0007 (consumer names, configuration versions) up and down on PostgreSQL and SQLite: existing
consumers get version 1, and 0004's kcm_changes triggers survive both directions."""
from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from schema.db import make_engine
from schema.migrate import downgrade, upgrade

INSERT = sa.text(
    "INSERT INTO consumers (id, topic, consumer_group, replicas, auto_offset_reset, status, desired_state, "
    "generation, created_at, updated_at, broker_ip, broker_port) VALUES (:id, 't', 'g', 1, 'earliest', "
    "'INACTIVE', 'stopped', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '127.0.0.1', 9092)")


@pytest.fixture
def scratch_pg(pg_url):
    """A database of its own: going down and up must not disturb the session's test database."""
    url = make_url(pg_url)
    name = f"{url.database}_m7"
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _triggers(conn, dialect: str) -> set[str]:
    if dialect == "postgresql":
        query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'kcm_changes%'"
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    return {row[0] for row in conn.execute(sa.text(query))}


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_0007_backfills_version_1_and_keeps_the_change_triggers(backend, request, tmp_path):
    url = request.getfixturevalue("scratch_pg") if backend == "postgresql" else f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0006")
    engine = make_engine(url)
    consumer_id = uuid.uuid4()
    with engine.begin() as conn:
        triggers = _triggers(conn, backend)
        conn.execute(INSERT, {"id": consumer_id if backend == "postgresql" else consumer_id.hex})
    upgrade(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT number, summary, config FROM consumer_versions")).all()
        assert _triggers(conn, backend) == triggers
        before = conn.execute(sa.text("SELECT version FROM kcm_changes")).scalar()
    assert len(rows) == 1 and rows[0][0] == 1
    config = rows[0][2] if isinstance(rows[0][2], dict) else json.loads(rows[0][2])
    assert config["topic"] == "t" and config["name"] is None and config["downstream_processors"] == []
    with engine.begin() as conn:  # the list cache still sees writes to consumers at head
        conn.execute(sa.text("UPDATE consumers SET name = 'named'"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version FROM kcm_changes")).scalar() != before
    engine.dispose()
    downgrade(url, "0006")
    engine = make_engine(url)
    with engine.connect() as conn:
        assert "name" not in {c["name"] for c in sa.inspect(conn).get_columns("consumers")}
        assert "consumer_versions" not in sa.inspect(conn).get_table_names()
        assert _triggers(conn, backend) == triggers
    engine.dispose()
    upgrade(url)
