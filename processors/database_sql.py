"""``database_sync`` on a database that is not PostgreSQL (kcm's embedded SQLite, MySQL, ...), through SQLAlchemy Core.

``processors.database_sync`` keeps the PostgreSQL COPY path and hands any other SQLAlchemy URL here. Same
contract: one transaction per batch, idempotent on (topic, partition, offset) — the dialect's own
insert-or-ignore (SQLite/PostgreSQL ``ON CONFLICT DO NOTHING``, MySQL ``ON DUPLICATE KEY UPDATE`` as a no-op),
or, for other dialects, an insert of only the offsets the table does not hold yet — and with ``exactly_once``
the ``kcm_offsets`` rows written in that same transaction. Values are checked here, before the transaction:
``json`` must parse (strict: no NaN) and ``text`` must be UTF-8, else the batch fails as a poison message for
``on_error``. JSON values and headers are stored as their text (SQLite's JSON functions read it).

SQLite: the API and the supervisor write kcm's own file too, so a busy timeout lets a writer wait for the lock,
and "database is locked" (like any ``OperationalError``: a lost connection) is a ``RetriableError``.
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)

from processors.base import FatalError, PoisonMessageError, RetriableError
from processors.encoding import headers_json

log = logging.getLogger(__name__)

OFFSETS_TABLE = "kcm_offsets"


class InvalidValue(PoisonMessageError):
    """A message whose value does not fit ``value_format``: a poison message, isolated by ``on_error``."""


def target_table(metadata: MetaData, name: str, value_format: str) -> Table:
    """database_sync's table shape (docs/delivery.md); json and text values are TEXT, bytea is a BLOB."""
    schema, _, table = name.rpartition(".")
    return Table(
        table, metadata,
        Column("topic", String(249), primary_key=True),
        Column("partition", Integer, primary_key=True, autoincrement=False),
        Column("offset", BigInteger, primary_key=True, autoincrement=False),
        Column("key", LargeBinary),
        Column("value", LargeBinary if value_format == "bytea" else Text),
        Column("headers", Text),  # JSON text: [{"key": ..., "value": ...}]
        Column("timestamp", DateTime(timezone=True)),
        schema=schema or None,
    )


def offsets_table(metadata: MetaData) -> Table:
    # the same table as schema/migrations/versions/0003_kcm_offsets.py, for a target that is not kcm's database
    return Table(
        OFFSETS_TABLE, metadata,
        Column("consumer_id", String(64), primary_key=True),
        Column("processor_id", String(64), primary_key=True),
        Column("topic", String(249), primary_key=True),
        Column("partition", Integer, primary_key=True, autoincrement=False),
        Column("next_offset", BigInteger, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _json_text(data: bytes) -> str:
    text = data.decode("utf-8")
    json.loads(text, parse_constant=_reject_constant)  # strict, as PostgreSQL's jsonb input is
    return text


def _utf8(data: bytes) -> str:
    return data.decode("utf-8")


def _as_is(data: bytes) -> bytes:
    return data


_CONVERTERS = {"json": _json_text, "text": _utf8, "bytea": _as_is}


def _when(timestamp_type: int, ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if timestamp_type else None


def insert_ignoring_duplicates(conn, table: Table, rows: list[dict]) -> None:
    """Insert ``rows``; one whose primary key is already there is left as it is (a redelivery is a no-op)."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        dialect_insert = _dialect_insert(dialect)
        conn.execute(dialect_insert(table).on_conflict_do_nothing(), rows)
    elif dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        statement = mysql_insert(table)
        conn.execute(statement.on_duplicate_key_update(topic=statement.inserted.topic), rows)
    else:
        insert_new_only(conn, table, rows)


def _dialect_insert(dialect: str):
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    return dialect_insert


def insert_new_only(conn, table: Table, rows: list[dict]) -> None:
    """The portable fallback: read which offsets of the batch's range are there (one query per partition),
    insert the others. A partition has one writer at a time (the group member that owns it)."""
    by_partition: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        by_partition.setdefault((row["topic"], row["partition"]), []).append(row)
    new: list[dict] = []
    for (topic, partition), group in by_partition.items():
        offsets = [row["offset"] for row in group]
        present = set(conn.scalars(select(table.c.offset).where(and_(
            table.c.topic == topic, table.c.partition == partition,
            table.c.offset.between(min(offsets), max(offsets))))))
        new.extend(row for row in group if row["offset"] not in present)
    if new:
        conn.execute(insert(table), new)


def store_offsets(conn, table: Table, consumer_id: str, processor_id: str,
                  offsets: dict[tuple[str, int], int]) -> None:
    """Move each partition's stored next offset forward (never back), inserting the row the first time."""
    for (topic, partition), next_offset in offsets.items():
        key = and_(table.c.consumer_id == consumer_id, table.c.processor_id == processor_id,
                   table.c.topic == topic, table.c.partition == partition)
        moved = conn.execute(update(table).where(key, table.c.next_offset < next_offset)
                             .values(next_offset=next_offset, updated_at=func.now()))
        if moved.rowcount == 0 and conn.scalar(select(func.count()).select_from(table).where(key)) == 0:
            conn.execute(insert(table).values(consumer_id=consumer_id, processor_id=processor_id, topic=topic,
                                              partition=partition, next_offset=next_offset))


def _make_engine(url: str, connect_timeout: int):
    try:
        if url.startswith("sqlite"):
            # sqlite3's timeout is its busy timeout: wait for the API's or the supervisor's write to finish
            return create_engine(url, connect_args={"timeout": connect_timeout, "check_same_thread": False})
        return create_engine(url, pool_pre_ping=True, pool_size=1)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise FatalError(f"database_sync cannot use this database URL: {type(exc).__name__}") from None


def _reason(exc: SQLAlchemyError, redact=str) -> str:
    """The driver's own message, without SQLAlchemy's rendering of the statement and its parameters, and
    without the resolved URL's parts (``redact``: the processor's ``schema.secrets.Redactor``)."""
    orig = getattr(exc, "orig", None)
    lines = str(orig or exc).strip().splitlines()
    return f"{type(orig or exc).__name__}: {redact(lines[0])[:300] if lines else ''}"


class SqlSink:
    """The generic write path of one database_sync processor (see the module docstring)."""

    def __init__(self, url: str, config: dict, *, consumer_id: str, processor_id: str, redact=str):
        self.config = config
        self._redact = redact
        self.consumer_id = consumer_id
        self.processor_id = processor_id
        metadata = MetaData()
        self.table = target_table(metadata, config["table"], config["value_format"])
        self.offsets_table = offsets_table(metadata) if config["exactly_once"] else None
        self._value = _CONVERTERS[config["value_format"]]
        self._engine = _make_engine(url, config["connect_timeout"])
        self._ready = False
        self.discard()

    def open(self) -> None:
        try:
            self._prepare()
        except RetriableError as exc:  # the target may come back: the first batch prepares it again
            log.warning("database_sync %s: target not reachable at open, will retry: %s", self.processor_id, exc)

    def _prepare(self) -> None:
        if self._ready:
            return
        tables = [t for t in (self.table, self.offsets_table) if t is not None]
        try:
            if self.config["create_table"]:
                self.table.metadata.create_all(self._engine, tables=tables)
            with self._engine.connect() as conn:
                inspector = inspect(conn)
                missing = [t.fullname for t in tables if not inspector.has_table(t.name, schema=t.schema)]
        except OperationalError as exc:
            raise RetriableError(f"database_sync cannot reach the target: {_reason(exc, self._redact)}") from None
        except DBAPIError as exc:
            raise FatalError(f"database_sync cannot prepare the target: {_reason(exc, self._redact)}") from None
        if missing:
            raise FatalError(
                f"database_sync: table(s) {', '.join(missing)} missing; set create_table: true or create "
                f"them as docs/delivery.md shows")
        self._ready = True

    def process(self, batch) -> None:
        value, offsets, rows = self._value, self._offsets, self._rows
        for m in batch:
            data = m.value()
            try:
                converted = None if data is None else value(data)
            except ValueError as exc:  # UnicodeDecodeError and json's errors are ValueErrors
                raise InvalidValue(f"database_sync: the value of {m.topic()}/{m.partition()}@{m.offset()} is "
                                   f"not {self.config['value_format']}: {exc}") from None
            headers = m.headers()
            rows.append({"topic": m.topic(), "partition": m.partition(), "offset": m.offset(), "key": m.key(),
                         "value": converted, "headers": json.dumps(headers_json(headers)) if headers else None,
                         "timestamp": _when(*m.timestamp())})
            offsets[(m.topic(), m.partition())] = m.offset() + 1

    def flush(self) -> None:
        if not self._rows:
            return
        self._prepare()
        try:
            with self._engine.begin() as conn:  # one transaction: the rows and, with exactly_once, the offsets
                insert_ignoring_duplicates(conn, self.table, self._rows)
                if self.offsets_table is not None:
                    store_offsets(conn, self.offsets_table, self.consumer_id, self.processor_id, self._offsets)
        except OperationalError as exc:  # SQLite's "database is locked", a lost connection, a server going away
            raise RetriableError(f"database_sync: {_reason(exc, self._redact)}") from None
        except (IntegrityError, DataError) as exc:  # a constraint or a value the target refuses: isolated at once
            raise PoisonMessageError(f"database_sync: the target refused a row: {_reason(exc, self._redact)}") from None
        except DBAPIError as exc:
            raise RetriableError(f"database_sync: {_reason(exc, self._redact)}") from None
        self.discard()

    def committed_offsets(self, partitions) -> dict[tuple[str, int], int]:
        if self.offsets_table is None:
            return {}
        wanted, table = set(partitions), self.offsets_table
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(select(table.c.topic, table.c.partition, table.c.next_offset).where(
                    table.c.consumer_id == self.consumer_id, table.c.processor_id == self.processor_id)).all()
        except SQLAlchemyError as exc:
            # Kafka's commit is never ahead of ours (the worker commits after flush): resuming there loses
            # nothing, and the primary key turns the re-read messages into no-ops
            log.warning("database_sync %s: cannot read kcm_offsets (%s); resuming from Kafka's commit",
                        self.processor_id, _reason(exc, self._redact))
            return {}
        return {(t, p): o for t, p, o in rows if (t, p) in wanted}

    def discard(self) -> None:
        self._rows: list[dict] = []
        self._offsets: dict[tuple[str, int], int] = {}

    def close(self) -> None:
        self._engine.dispose()
