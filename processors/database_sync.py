"""``database_sync``: one transaction per batch, idempotent on (topic, partition, offset).

The target is kcm's own database (``context.settings.database_url``) or the one a ``dsn`` reference names: a
libpq DSN, a ``postgresql://`` URL or any SQLAlchemy URL. PostgreSQL takes the COPY path below; any other
database (kcm's embedded SQLite, ...) the SQLAlchemy Core path of ``processors.database_sql``; which one a value
names, the DDL and the column checks are ``processors.database_target``. With no ``table`` the sink writes
``kcm_messages`` (``schema.names.DEFAULT_SINK_TABLE``), created if missing; kcm's own tables are never a target
(``schema.names.protected_table``).

Fast path: the batch is COPYed straight into the target, the same single statement a hand-written loop runs.
A redelivered batch (after a crash or a rebalance) hits the primary key: that transaction is rolled back and
the batch goes through a temp table instead, ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``, so a redelivered
message is a no-op; the next batch that inserts all its rows that way switches back to the fast path. Payloads
are sent in COPY's text format and converted by PostgreSQL's own input functions (``value_format``), so a
value that is not valid JSON/UTF-8 fails the batch there, a poison message for ``on_error``. With
``exactly_once`` the next offset per partition is upserted into ``kcm_offsets`` in the same transaction and
reported by ``committed_offsets`` so the worker seeks there on assignment.
"""
from __future__ import annotations

import io
import json
import logging
import re
import time

import psycopg2
import psycopg2.errors
from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate
from marshmallow.experimental.context import Context
from psycopg2 import sql
from psycopg2.extras import execute_values

from processors.base import BaseProcessor, FatalError, PoisonMessageError, RetriableError
from processors.checks import Check
from processors.database_target import (  # target_ddl: for __main__, and still importable from here (bench/)
    OFFSETS_DDL,
    REQUIRED_COLUMNS,
    TARGET_DDL,
    VALUE_TYPES,
    _exists,
    _pg_columns,
    _sql_columns,
    target_ddl,
    target_of,
)
from processors.encoding import headers_json
from schema import names, secrets
from schema.secrets import Redactor, SecretPolicy, SecretReferenceInvalid

log = logging.getLogger(__name__)

_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$")
NULL = b"\\N"  # COPY text format
COLUMNS = 'topic, partition, "offset", key, value, headers, "timestamp"'

# the target's seven columns with their types and nothing else (no constraint, no default), emptied at commit
_STAGE_DDL = "CREATE TEMP TABLE IF NOT EXISTS kcm_stage ON COMMIT DELETE ROWS AS SELECT {columns} FROM {table} WITH NO DATA"


def _validate_table(value: str) -> None:
    if names.protected_table(value):
        raise ValidationError(names.PROTECTED_TABLE_MESSAGE)


def _validate_dsn(value: str) -> None:
    # the API validates with its settings in marshmallow's Context; elsewhere open() applies the policy
    settings = Context.get({}).get("settings")
    problem = secrets.check(value, SecretPolicy.of(settings) if settings is not None else None)
    if problem is not None:
        raise ValidationError(problem)


class DatabaseSyncConfig(Schema):
    class Meta:
        unknown = RAISE

    table = fields.String(load_default=None, validate=[
        _validate_table, validate.Regexp(_TABLE_NAME, error="a lower-case [schema.]table name")], metadata={
        "description": f"target table, [schema.]name; default: {names.DEFAULT_SINK_TABLE} (created if missing). "
                       "kcm's own tables (consumers, downstream_processors, alembic_version, kcm_*) are refused"})
    dsn = fields.String(load_default=None, allow_none=True, validate=_validate_dsn, metadata={
        "description": "${env:KCM_SECRET_...} or ${file:/run/secrets/...} (docs/security.md) holding a libpq DSN "
                       "or a database URL (postgresql://, sqlite:///..., any SQLAlchemy URL); default: kcm's own "
                       "database"})
    value_format = fields.String(load_default="bytea", validate=validate.OneOf(list(VALUE_TYPES)), metadata={
        "description": "value column type: json (JSONB on PostgreSQL, JSON text elsewhere; a non-JSON value is "
                       "an error), text (UTF-8), bytea"})
    create_table = fields.Boolean(load_default=None, allow_none=True, metadata={
        "description": "create the table (and kcm_offsets) if missing; otherwise it must exist (see docs). "
                       f"Default: true for {names.DEFAULT_SINK_TABLE}, false for a table you name"})
    exactly_once = fields.Boolean(load_default=False, metadata={
        "description": "store offsets in kcm_offsets in the batch's transaction; resume from them"})
    connect_timeout = fields.Integer(load_default=5, validate=validate.Range(min=1, max=300), metadata={
        "description": "seconds to wait for a connection (for SQLite: for the write lock)"})

    @post_load
    def _defaults(self, data, **kwargs):
        named = data["table"] is not None
        if not named:
            data["table"] = names.DEFAULT_SINK_TABLE
        if data["create_table"] is None:
            data["create_table"] = not named
        return data


def _hex(data: bytes | None) -> bytes:
    return NULL if data is None else b"\\\\x" + data.hex().encode()


def _escaped(data: bytes | None) -> bytes:
    """Bytes as a COPY text field; PostgreSQL checks them (UTF-8 for text, JSON for jsonb) on input."""
    if data is None:
        return NULL
    return data.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def _headers(headers) -> bytes:
    # json.dumps escapes every control character and is ASCII: only the backslash needs COPY's escape
    return json.dumps(headers_json(headers)).encode().replace(b"\\", b"\\\\") if headers else NULL


class _Timestamps:
    """Kafka milliseconds as timestamptz text; the messages of a batch share a few seconds, formatted once each."""

    def __init__(self):
        self._seconds: dict[int, bytes] = {}

    def __call__(self, timestamp_type: int, ms: int) -> bytes:
        if not timestamp_type:
            return NULL
        seconds, millis = divmod(ms, 1000)
        text = self._seconds.get(seconds)
        if text is None:
            if len(self._seconds) > 4096:
                self._seconds.clear()
            text = self._seconds[seconds] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)).encode()
        return b"%s.%03d+00" % (text, millis)


class DatabaseSyncProcessor(BaseProcessor):
    ConfigSchema = DatabaseSyncConfig
    description = ("Writes messages to a table of kcm's database or another (PostgreSQL, SQLite, any SQLAlchemy "
                   "URL), one transaction per batch, idempotent on (topic, partition, offset)")

    _conn = None
    _sql = None  # processors.database_sql.SqlSink when the target is not PostgreSQL
    _redact = Redactor()  # hides the resolved dsn from a driver's message

    def open(self) -> None:
        postgres, target = self._target()  # a missing reference or an unusable URL is a configuration error
        if not postgres:
            from processors.database_sql import SqlSink

            self._sql = SqlSink(target, self.config, consumer_id=self.consumer_id, processor_id=self.processor_id,
                                redact=self._redact)
            self._sql.open()
            return
        self._table = sql.SQL(".").join(sql.Identifier(part) for part in self.config["table"].split("."))
        self._copy = sql.SQL("COPY {table} (" + COLUMNS + ") FROM STDIN").format(table=self._table)
        self._stage = sql.SQL(_STAGE_DDL).format(columns=sql.SQL(COLUMNS), table=self._table)
        # no ORDER BY: ON CONFLICT makes the order irrelevant, and a sort per batch costs throughput
        self._insert = sql.SQL("INSERT INTO {table} (" + COLUMNS + ") SELECT " + COLUMNS + " FROM kcm_stage "
                               "ON CONFLICT DO NOTHING").format(table=self._table)
        self._value = _hex if self.config["value_format"] == "bytea" else _escaped
        self._timestamp = _Timestamps()
        self._direct = True  # COPY straight into the target until a batch meets rows already there
        self._pending: list[bytes] = []
        self._rows = 0
        self._offsets: dict[tuple[str, int], int] = {}
        try:
            self._connect()
        except RetriableError as exc:  # the target may come back: the first batch retries the connection
            log.warning("database_sync %s: target not reachable at open, will retry: %s", self.processor_id,
                        self._redact(str(exc)))

    @classmethod
    def check(cls, config: dict, context) -> list[Check]:
        """The target answers within connect_timeout, and its table has the seven columns (or will be created)."""
        table, name = config["table"], f"database_sync {config['table']}"
        probe = cls(config, context=context)
        try:
            postgres, target = probe._target()
            columns = _pg_columns(target, config) if postgres else _sql_columns(target, config)
        except FatalError as exc:
            return [Check(name, False, probe._redact(str(exc)))]
        except Exception as exc:  # noqa: BLE001 - any driver error is a finding, told without the dsn
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return [Check(name, False, f"Cannot connect to the target database: {probe._redact(text)[:300]}")]
        if columns is None:
            if config["create_table"]:
                return [Check(name, True, f"Database reachable; table {table} does not exist yet and will be "
                                          "created (create_table).")]
            return [Check(name, False, f"Database reachable, but table {table} does not exist and create_table "
                                       f"is false; create it (python -m processors.database_sync {table}).")]
        missing = [column for column in REQUIRED_COLUMNS if column not in columns]
        if missing:
            return [Check(name, False, f"Table {table} lacks the column(s) {', '.join(missing)}; it needs "
                                       f"{', '.join(REQUIRED_COLUMNS)} (python -m processors.database_sync "
                                       f"{table} prints the DDL).")]
        return [Check(name, True, f"Database reachable; table {table} has the required columns.")]

    def _target(self) -> tuple[bool, str]:
        """``(is PostgreSQL, what to connect with)``, re-resolved (and re-checked) at every (re)connect."""
        reference = self.config["dsn"]
        if not reference:
            return target_of(self.context.settings.database_url, "kcm's database URL (KCM_DATABASE_URL)")
        try:
            value = secrets.resolve(reference, SecretPolicy.of(self.context.settings))
        except secrets.SecretError as exc:
            raise FatalError(f"database_sync dsn: {exc}") from None
        self._redact = Redactor([(reference, value)])
        return target_of(value, reference)

    def _dsn(self) -> str:
        postgres, target = self._target()
        if not postgres:
            raise FatalError("database_sync: the dsn reference now names a database that is not PostgreSQL; "
                             "restart the consumer to switch paths")
        return target

    def _connect(self):
        if self._conn is not None:
            return self._conn
        try:
            conn = psycopg2.connect(self._dsn(), connect_timeout=self.config["connect_timeout"],
                                    application_name=f"kcm-database_sync-{self.processor_id}"[:63])
        except psycopg2.ProgrammingError:  # libpq's "invalid dsn: ..." quotes the DSN
            raise FatalError(str(SecretReferenceInvalid(self.config["dsn"] or "KCM_DATABASE_URL", "a valid DSN"))) from None
        except psycopg2.OperationalError as exc:
            text = str(exc).strip()
            message = self._redact(text.splitlines()[0]) if text else type(exc).__name__
            if "authentication failed" in message or "does not exist" in message:
                raise FatalError(f"database_sync cannot connect: {message}") from exc
            raise RetriableError(f"database_sync cannot connect: {message}") from exc
        try:
            with conn.cursor() as cur:
                if self.config["create_table"]:
                    cur.execute(sql.SQL(TARGET_DDL).format(
                        table=self._table, value_type=sql.SQL(VALUE_TYPES[self.config["value_format"]])))
                    if self.config["exactly_once"]:
                        cur.execute(OFFSETS_DDL)
                missing = [name for name in [self.config["table"]] + (["kcm_offsets"] if self.config["exactly_once"] else [])
                           if not _exists(cur, name)]
                if missing:
                    raise FatalError(
                        f"database_sync: table(s) {', '.join(missing)} missing; set create_table: true or run the "
                        f"DDL in docs/delivery.md (python -m processors.database_sync {self.config['table']})")
            conn.commit()
        except Exception:
            conn.close()
            raise
        self._conn = conn
        return conn

    def process(self, batch) -> None:
        if self._sql is not None:
            return self._sql.process(batch)
        value, timestamp = self._value, self._timestamp
        self._pending.extend([b"%s\t%d\t%d\t%s\t%s\t%s\t%s\n" % (
            m.topic().encode(), m.partition(), m.offset(), _hex(m.key()), value(m.value()), _headers(m.headers()),
            timestamp(*m.timestamp())) for m in batch])
        self._rows += len(batch)
        if self.config["exactly_once"]:
            for m in batch:  # the batch's last offset per partition is enough; batches arrive in order
                self._offsets[(m.topic(), m.partition())] = m.offset() + 1

    def flush(self) -> None:
        if self._sql is not None:
            return self._sql.flush()
        if not self._pending:
            return
        conn = self._connect()
        data = b"".join(self._pending)
        try:
            if self._direct:
                try:
                    self._write(conn, self._copy, data)
                except psycopg2.errors.UniqueViolation:
                    conn.rollback()  # rows of this batch are already there: a redelivery
                    self._direct = False
                    log.info("database_sync %s: redelivered rows; inserting with ON CONFLICT DO NOTHING until a "
                             "batch is all new", self.processor_id)
            if not self._direct:
                with conn.cursor() as cur:
                    cur.execute(self._stage)
                inserted = self._write(conn, sql.SQL("COPY kcm_stage (" + COLUMNS + ") FROM STDIN"), data,
                                       then=self._insert)
                self._direct = inserted == self._rows
            conn.commit()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            self._drop_connection()
            raise RetriableError(f"database_sync lost the connection: {self._redact(str(exc).strip())[:300]}") from exc
        except psycopg2.errors.UndefinedTable as exc:
            self._rollback()
            raise FatalError(f"database_sync: {self._redact(str(exc).strip())[:300]}") from exc
        except (psycopg2.DataError, psycopg2.IntegrityError) as exc:  # invalid json/text, a constraint: the data
            self._rollback()
            raise PoisonMessageError(f"database_sync: the target refused a row: "
                                     f"{self._redact(str(exc).strip())[:300]}") from exc
        except Exception:
            self._rollback()
            raise
        self._pending.clear()
        self._offsets.clear()
        self._rows = 0

    def _write(self, conn, copy, data: bytes, then=None) -> int:
        """COPY the batch (then ``then``), and the offsets in the same transaction; the rows ``then`` inserted."""
        with conn.cursor() as cur:
            cur.copy_expert(copy, io.BytesIO(data))
            inserted = -1
            if then is not None:
                cur.execute(then)
                inserted = cur.rowcount
            if self._offsets:
                execute_values(cur, (
                    "INSERT INTO kcm_offsets (consumer_id, processor_id, topic, partition, next_offset) VALUES %s "
                    "ON CONFLICT (consumer_id, processor_id, topic, partition) DO UPDATE SET "
                    "next_offset = GREATEST(kcm_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()"),
                    [(self.consumer_id, self.processor_id, t, p, o) for (t, p), o in self._offsets.items()])
        return inserted

    def committed_offsets(self, partitions):
        if self._sql is not None:
            return self._sql.committed_offsets(partitions)
        if not self.config["exactly_once"]:
            return {}
        wanted = set(partitions)
        try:
            conn = self._connect()
            with conn.cursor() as cur:
                cur.execute("SELECT topic, partition, next_offset FROM kcm_offsets "
                            "WHERE consumer_id = %s AND processor_id = %s", (self.consumer_id, self.processor_id))
                rows = cur.fetchall()
            conn.rollback()
        except (RetriableError, psycopg2.Error) as exc:
            # Kafka's commit is never ahead of ours (the worker commits after flush): resuming there loses
            # nothing, and the primary key turns the re-read messages into no-ops
            log.warning("database_sync %s: cannot read kcm_offsets (%s); resuming from Kafka's commit",
                        self.processor_id, self._redact(str(exc)))
            self._drop_connection()
            return {}
        return {(t, p): o for t, p, o in rows if (t, p) in wanted}

    @classmethod
    def stored_offsets(cls, config: dict, context, processor_id: str) -> dict[int, int] | None:
        """With ``exactly_once``: the ``kcm_offsets`` rows of this processor for ``context.topic``."""
        if not config["exactly_once"]:
            return None
        from processors.database_offsets import OffsetStore

        return OffsetStore(cls(config, consumer_id=context.consumer_id, processor_id=processor_id,
                               context=context)).read()

    @classmethod
    def reset_stored_offsets(cls, config: dict, context, processor_id: str, offsets: dict[int, int] | None) -> None:
        """With ``exactly_once``: set (back or forward) or delete the ``kcm_offsets`` rows, in one transaction."""
        if config["exactly_once"]:
            from processors.database_offsets import OffsetStore

            OffsetStore(cls(config, consumer_id=context.consumer_id, processor_id=processor_id,
                            context=context)).write(offsets)

    def discard(self) -> None:
        if self._sql is not None:
            return self._sql.discard()
        self._pending = []
        self._offsets = {}
        self._rows = 0

    def _rollback(self) -> None:
        try:
            self._conn.rollback()
        except psycopg2.Error:
            self._drop_connection()

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
            self._conn = None

    def close(self) -> None:
        if self._sql is not None:
            return self._sql.close()
        self._drop_connection()


if __name__ == "__main__":  # python -m processors.database_sync TABLE [json|text|bytea]: print the DDL
    import sys

    print(target_ddl(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "bytea") + ";\n" + OFFSETS_DDL + ";")
