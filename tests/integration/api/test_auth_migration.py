"""Migration 0005 (api_keys, audit_events) goes down and up on PostgreSQL and SQLite, and leaves the 0004
kcm_changes triggers working: an audit row does not move the list cache's version, a consumer write does."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from schema.db import make_engine
from schema.migrate import downgrade, upgrade


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _version(conn) -> int:
    return conn.execute(sa.text("SELECT version FROM kcm_changes WHERE id = 1")).scalar_one()


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_0005_goes_down_and_up_and_keeps_the_change_triggers(request, database, tmp_path):
    if database == "postgresql":
        request.getfixturevalue("pg_clean")
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'auth.sqlite3'}"
        upgrade(url)
    assert {"api_keys", "audit_events"} <= _tables(url)
    downgrade(url, "0004")
    assert not {"api_keys", "audit_events"} & _tables(url)
    assert "kcm_changes" in _tables(url)
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            before = _version(conn)
            conn.execute(sa.text(
                "INSERT INTO audit_events (occurred_at, principal_type, action, outcome) "
                "VALUES (CURRENT_TIMESTAMP, 'system', 'test', 'allowed')"))
        with engine.begin() as conn:
            assert _version(conn) == before  # the audit trail is not part of the list cache's version
            conn.execute(sa.text(
                "INSERT INTO consumers (id, topic, consumer_group, status, desired_state, generation, replicas, "
                "auto_offset_reset, created_at, updated_at) VALUES "
                "('0a0a0a0a0a0a4a0a8a0a0a0a0a0a0a0a', 't', 'g', 'INACTIVE', 'stopped', 1, 1, 'earliest', "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        with engine.begin() as conn:
            assert _version(conn) != before
    finally:
        engine.dispose()
