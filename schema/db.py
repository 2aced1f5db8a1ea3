"""Engine and session factory for kcm's state database (PostgreSQL, or SQLite as the embedded default)."""
from __future__ import annotations

import time

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker

from schema.redact import redacted  # noqa: F401  (re-exported: callers import it from here)


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # FK cascades are off by default in SQLite
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    ping_after_idle = kwargs.pop("ping_after_idle_seconds", PING_AFTER_IDLE_SECONDS)
    if "pool_pre_ping" in kwargs:  # the caller asked for SQLAlchemy's ping on every checkout (or none)
        return create_engine(url, **kwargs)
    engine = create_engine(url, **kwargs)
    _ping_when_idle(engine, ping_after_idle)
    return engine


# SQLAlchemy's pool_pre_ping costs a round trip on every checkout (~0.1 ms of client CPU, a tenth of a cached
# list request: BENCHMARKS.md, API latency). A connection used less than this long ago is taken as alive;
# an older one is pinged, so after a server restart (longer than this) no request meets a dead connection.
PING_AFTER_IDLE_SECONDS = 1.0
_CHECKED_IN_AT = "kcm_checked_in_at"


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    @event.listens_for(engine, "checkin")
    def _note_checkin(_dbapi_connection, record):
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < idle_seconds:
            return  # new, or just used
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # as pool_pre_ping does: the pool replaces this connection (and every older one) and retries
            raise InvalidatePoolError(f"pooled connection failed its ping: {type(exc).__name__}") from exc


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
