"""``database_sync``'s ``kcm_offsets`` rows read and changed from outside a worker: what GET
/consumers/{id}/offsets/ shows and what a reset or a delete of the offsets sets (``BaseProcessor.stored_offsets``
and ``reset_stored_offsets``, processors/base.py).

The target is the one the processor writes (``dsn`` or kcm's own database): PostgreSQL through psycopg2, any
other database through SQLAlchemy Core, with the table of processors/database_sql.py. A write moves the rows back
as well as forward (the worker's own upsert only moves them forward) and happens in one transaction. Errors are
``RetriableError``/``FatalError`` whose text never holds the dsn (the processor's ``Redactor``).
"""
from __future__ import annotations

from contextlib import contextmanager

import psycopg2
from psycopg2.extras import execute_values
from sqlalchemy import MetaData, and_, delete, func, insert, inspect, select, update
from sqlalchemy.exc import SQLAlchemyError

from processors.base import FatalError, RetriableError
from processors.database_sql import OFFSETS_TABLE, _make_engine, _reason, offsets_table
from processors.database_target import OFFSETS_DDL, _exists

MISSING_TABLE = ("database_sync: table kcm_offsets missing and create_table is false; create it as "
                 "docs/delivery.md shows (python -m processors.database_sync TABLE prints the DDL)")


class OffsetStore:
    """The ``kcm_offsets`` rows of one processor (``processor``: a ``DatabaseSyncProcessor``, not opened) for
    its consumer's topic."""

    def __init__(self, processor):
        self.processor = processor
        self.config = processor.config
        self.key = (processor.consumer_id, processor.processor_id, processor.context.topic)
        self.postgres, self.target = processor._target()  # resolves the dsn reference; sets the Redactor
        self.redact = processor._redact

    def read(self) -> dict[int, int]:
        """``{partition: next offset}``; none when the table does not exist yet."""
        if not self.postgres:
            return self._sql_read()
        with self._pg_cursor("read") as cur:
            if not _exists(cur, OFFSETS_TABLE):
                return {}
            cur.execute("SELECT partition, next_offset FROM kcm_offsets WHERE consumer_id = %s AND processor_id = %s "
                        "AND topic = %s", self.key)
            return {int(p): int(o) for p, o in cur.fetchall()}

    def write(self, offsets: dict[int, int] | None) -> None:
        """Set each partition's row to ``offsets`` (others untouched), or delete every row of the topic (None)."""
        if not self.postgres:
            return self._sql_write(offsets)
        with self._pg_cursor("write") as cur:
            if not _exists(cur, OFFSETS_TABLE):
                if offsets is None:
                    return
                if not self.config["create_table"]:
                    raise FatalError(MISSING_TABLE)
                cur.execute(OFFSETS_DDL)
            if offsets is None:
                cur.execute("DELETE FROM kcm_offsets WHERE consumer_id = %s AND processor_id = %s AND topic = %s",
                            self.key)
                return
            execute_values(cur, (
                "INSERT INTO kcm_offsets (consumer_id, processor_id, topic, partition, next_offset) VALUES %s "
                "ON CONFLICT (consumer_id, processor_id, topic, partition) DO UPDATE SET "
                "next_offset = EXCLUDED.next_offset, updated_at = now()"),
                [(*self.key, partition, offset) for partition, offset in sorted(offsets.items())])

    @contextmanager
    def _pg_cursor(self, what: str):
        """A cursor in a transaction of its own, committed when the block ends cleanly."""
        try:
            conn = psycopg2.connect(self.target, connect_timeout=self.config["connect_timeout"],
                                    application_name=f"kcm-offsets-{self.processor.processor_id}"[:63])
        except psycopg2.Error as exc:
            raise RetriableError(f"database_sync cannot connect to {what} kcm_offsets: {self._text(exc)}") from None
        try:
            with conn, conn.cursor() as cur:  # psycopg2: commit on a clean exit, rollback on an exception
                yield cur
        except psycopg2.Error as exc:
            raise RetriableError(f"database_sync cannot {what} kcm_offsets: {self._text(exc)}") from None
        finally:
            conn.close()

    def _text(self, exc: Exception) -> str:
        lines = str(exc).strip().splitlines()
        return self.redact(lines[0])[:300] if lines else type(exc).__name__

    def _sql_read(self) -> dict[int, int]:
        engine = _make_engine(self.target, self.config["connect_timeout"])
        table = offsets_table(MetaData())
        consumer_id, processor_id, topic = self.key
        try:
            with engine.connect() as conn:
                if not inspect(conn).has_table(OFFSETS_TABLE):
                    return {}
                rows = conn.execute(select(table.c.partition, table.c.next_offset).where(
                    table.c.consumer_id == consumer_id, table.c.processor_id == processor_id,
                    table.c.topic == topic)).all()
        except SQLAlchemyError as exc:
            raise RetriableError(f"database_sync cannot read kcm_offsets: {_reason(exc, self.redact)}") from None
        finally:
            engine.dispose()
        return {int(p): int(o) for p, o in rows}

    def _sql_write(self, offsets: dict[int, int] | None) -> None:
        engine = _make_engine(self.target, self.config["connect_timeout"])
        table = offsets_table(MetaData())
        consumer_id, processor_id, topic = self.key
        key = and_(table.c.consumer_id == consumer_id, table.c.processor_id == processor_id, table.c.topic == topic)
        try:
            with engine.begin() as conn:
                if not inspect(conn).has_table(OFFSETS_TABLE):
                    if offsets is None:
                        return
                    if not self.config["create_table"]:
                        raise FatalError(MISSING_TABLE)
                    table.metadata.create_all(conn, tables=[table])
                if offsets is None:
                    conn.execute(delete(table).where(key))
                    return
                for partition, offset in sorted(offsets.items()):
                    row = and_(key, table.c.partition == partition)
                    moved = conn.execute(update(table).where(row).values(next_offset=offset, updated_at=func.now()))
                    if moved.rowcount == 0:
                        conn.execute(insert(table).values(consumer_id=consumer_id, processor_id=processor_id,
                                                          topic=topic, partition=partition, next_offset=offset))
        except SQLAlchemyError as exc:
            raise RetriableError(f"database_sync cannot write kcm_offsets: {_reason(exc, self.redact)}") from None
        finally:
            engine.dispose()
