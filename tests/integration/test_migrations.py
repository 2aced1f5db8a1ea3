"""Alembic migrations run up and down on both PostgreSQL and SQLite."""
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
