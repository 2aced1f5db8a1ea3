"""Alembic migrations run up and down on both PostgreSQL and SQLite."""
import pytest
import sqlalchemy as sa

from schema.db import make_engine
from schema.migrate import downgrade, upgrade


def _columns(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_postgres_is_migrated_to_head_with_seed_tables(pg_url):
    cols = _columns(pg_url, "consumers")
    assert {"id", "broker_ip", "broker_port", "topic", "consumer_group", "client_id", "status",
            "desired_state", "generation", "created_at", "updated_at", "replicas", "bootstrap_servers"} <= cols
    assert {"id", "consumer_id", "processor_type", "config", "position", "on_error"} <= _columns(
        pg_url, "downstream_processors")
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        config_type = conn.execute(sa.text(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name='downstream_processors' AND column_name='config'")).scalar()
    engine.dispose()
    assert config_type == "jsonb"


def test_sqlite_migrates_up_down_and_up_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    upgrade(url)
    assert "replicas" in _columns(url, "consumers")
    downgrade(url, "base")
    engine = make_engine(url)
    assert "consumers" not in sa.inspect(engine).get_table_names()
    engine.dispose()
    upgrade(url)
    assert "on_error" in _columns(url, "downstream_processors")


def _change_version(conn) -> int | None:
    return conn.execute(sa.text("SELECT version FROM kcm_changes WHERE id = 1")).scalar()


def _api_key_writes_move_the_version(url: str) -> bool:
    """Insert, update and delete an API key: did each one move kcm_changes.version?"""
    engine = make_engine(url)
    moved = []
    try:
        for statement in (
            "INSERT INTO api_keys (id, name, role, token_digest, created_at) "
            "VALUES ('0b0b0b0b0b0b4b0b8b0b0b0b0b0b0b0b', 'k', 'viewer', 'digest-0006', CURRENT_TIMESTAMP)",
            "UPDATE api_keys SET role = 'admin' WHERE token_digest = 'digest-0006'",
            "DELETE FROM api_keys WHERE token_digest = 'digest-0006'",
        ):
            with engine.begin() as conn:
                before = _change_version(conn)
                conn.execute(sa.text(statement))
            with engine.begin() as conn:
                moved.append(_change_version(conn) != before)
    finally:
        engine.dispose()
    assert len(set(moved)) == 1, moved  # all or none
    return moved[0]


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_0006_api_key_writes_move_the_change_version_and_go_down_and_up(request, database, tmp_path):
    """The API's key cache is only as fresh as this: a revoke must move the version the list reads."""
    if database == "postgresql":
        request.getfixturevalue("pg_clean")
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'keys.sqlite3'}"
        upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:  # the row pg_clean truncated away comes back with any write to the watched tables
        conn.execute(sa.text("INSERT INTO kcm_changes (id, version) VALUES (1, 1) ON CONFLICT (id) DO NOTHING"))
    engine.dispose()
    assert _api_key_writes_move_the_version(url)
    downgrade(url, "0005")
    assert not _api_key_writes_move_the_version(url)
    upgrade(url)
    assert _api_key_writes_move_the_version(url)
