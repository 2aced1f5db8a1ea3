"""``database_sync``'s target: which database a resolved reference names, the tables it must hold, and what it holds.

``target_of`` tells PostgreSQL (the COPY path, processors/database_sync.py) from any other SQLAlchemy URL
(processors/database_sql.py) without quoting the secret in an error. ``TARGET_DDL``/``OFFSETS_DDL`` are the
PostgreSQL tables the sink creates (``create_table``) or expects (docs/delivery.md; ``python -m
processors.database_sync TABLE`` prints them). ``_pg_columns``/``_sql_columns`` read an existing table's columns
for the processor's ``check``. psycopg2 only at import: SQLAlchemy is imported when a function needs it (a worker
on the COPY path never loads it).
"""
from __future__ import annotations

import psycopg2
from psycopg2.extensions import parse_dsn

from processors.base import FatalError
from schema.secrets import SecretReferenceInvalid

VALUE_TYPES = {"json": "jsonb", "text": "text", "bytea": "bytea"}
REQUIRED_COLUMNS = ("topic", "partition", "offset", "key", "value", "headers", "timestamp")

TARGET_DDL = """CREATE TABLE IF NOT EXISTS {table} (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    key         bytea,
    value       {value_type},
    headers     jsonb,
    "timestamp" timestamptz,
    PRIMARY KEY (topic, partition, "offset")
)"""
# the same table as schema/migrations/versions/0003_kcm_offsets.py, for a target database that is not kcm's
OFFSETS_DDL = """CREATE TABLE IF NOT EXISTS kcm_offsets (
    consumer_id  varchar(64)  NOT NULL,
    processor_id varchar(64)  NOT NULL,
    topic        varchar(249) NOT NULL,
    partition    integer      NOT NULL,
    next_offset  bigint       NOT NULL,
    updated_at   timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_id, processor_id, topic, partition)
)"""


def target_ddl(table: str, value_format: str) -> str:
    """The documented DDL for a target table (``create_table: false`` expects exactly this shape)."""
    return TARGET_DDL.format(table=table, value_type=VALUE_TYPES[value_format])


def target_of(value: str, source: str) -> tuple[bool, str]:
    """A resolved dsn (or kcm's database URL) as ``(is PostgreSQL, libpq DSN/URL or SQLAlchemy URL)``.

    An unusable value is ``SecretReferenceInvalid`` naming ``source`` (the reference): a parser's own message
    quotes its input, which is the secret (a ``${file:...}`` of any file would be shown line by line)."""
    if "://" not in value:
        try:
            parse_dsn(value)  # a libpq key=value DSN
        except psycopg2.ProgrammingError:
            raise FatalError(str(SecretReferenceInvalid(source, "a valid DSN"))) from None
        return True, value
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        raise FatalError(str(SecretReferenceInvalid(source, "a valid DSN or database URL"))) from None
    if url.get_backend_name() in ("postgresql", "postgres"):
        return True, url.set(drivername="postgresql").render_as_string(hide_password=False)
    return False, url.render_as_string(hide_password=False)


def _pg_columns(dsn: str, config: dict) -> set[str] | None:
    """The table's column names, or None when it does not exist."""
    conn = psycopg2.connect(dsn, connect_timeout=config["connect_timeout"], application_name="kcm-validate")
    try:
        with conn.cursor() as cur:
            if not _exists(cur, config["table"]):
                return None
            cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
                        "AND NOT attisdropped", (config["table"],))
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def _sql_columns(url: str, config: dict) -> set[str] | None:
    from sqlalchemy import inspect

    from processors.database_sql import _make_engine

    schema, _, table = config["table"].rpartition(".")
    engine = _make_engine(url, config["connect_timeout"])
    try:
        inspector = inspect(engine)
        if not inspector.has_table(table, schema=schema or None):
            return None
        return {column["name"] for column in inspector.get_columns(table, schema=schema or None)}
    finally:
        engine.dispose()


def _exists(cur, name: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
    return cur.fetchone()[0]
