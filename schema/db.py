"""Engine and session factory for kcm's state database (PostgreSQL, or SQLite as the embedded default)."""
from __future__ import annotations

import os
import time

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
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
    kwargs["connect_args"] = {**libpq_defaults(url), **kwargs.get("connect_args", {})}
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    ping_after_idle = kwargs.pop("ping_after_idle_seconds", PING_AFTER_IDLE_SECONDS)
    if "pool_pre_ping" in kwargs:  # the caller asked for SQLAlchemy's ping on every checkout (or none)
        return create_engine(url, **kwargs)
    engine = create_engine(url, **kwargs)
    _ping_when_idle(engine, ping_after_idle)
    return engine


# libpq's own defaults wait for ever on a connect that gets no answer, and leave a dead peer to the kernel's
# keepalive (2 h). Here a connect gives up after 5 s; an idle connection to a partitioned server is probed after
# 10 s and dropped when 30 s pass without an answer, and so is one whose sent bytes go unacknowledged for 30 s
# (tcp_user_timeout; with it, Linux drops a keepalive-probed connection at 30 s rather than after the count).
# docs/operations.md
LIBPQ_CONNECTION_DEFAULTS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds; libpq 12 and later
}
TCP_USER_TIMEOUT_LIBPQ = 120000
# a connection string's setting wins, and so does libpq's environment variable for it
LIBPQ_ENVIRONMENT = {"connect_timeout": "PGCONNECT_TIMEOUT"}


def libpq_defaults(url: str) -> dict:
    """The settings above that the URL's query (``?connect_timeout=10``) and the environment leave unset, for
    psycopg2 (libpq); nothing for another driver."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() != "psycopg2":
        return {}
    from psycopg2.extensions import libpq_version

    defaults = dict(LIBPQ_CONNECTION_DEFAULTS)
    if libpq_version() < TCP_USER_TIMEOUT_LIBPQ:
        del defaults["tcp_user_timeout"]
    for name, variable in LIBPQ_ENVIRONMENT.items():
        if os.environ.get(variable):
            del defaults[name]
    return {name: value for name, value in defaults.items() if name not in parsed.query}


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
