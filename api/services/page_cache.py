"""The list cache's two halves: the change version (kcm_changes, moved by database triggers in the same commit
as any write to consumers, downstream_processors or api_keys, migrations 0004 and 0006) and a bounded store of
rendered pages; and ``fetch_row``, the cheapest one-statement read, which the API-key lookup uses too."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from flask import g, has_request_context
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from schema.models import ChangeCounter

VERSION_SQL = f"SELECT version FROM {ChangeCounter.__tablename__} WHERE id = 1"
REQUEST_VERSION = "kcm_change_version"  # flask.g attribute: (engine, version) read in this request
_UNREAD = (None, None)


def read_change_version(engine: Engine) -> int | None:
    """kcm_changes.version, or None when its row is missing (``fetch_row``).

    Read once per request: the first read is kept for the rest of it, so the API-key check at the start of a
    request (api/services/api_keys.py) and the list's cache lookup share one round trip. The one read comes
    before anything the request reads after it, which is all either needs (a value older than the data read
    after it, never newer)."""
    if not has_request_context():
        return _read(engine)
    read_engine, version = g.get(REQUEST_VERSION, _UNREAD)
    if read_engine is not engine:
        version = _read(engine)
        setattr(g, REQUEST_VERSION, (engine, version))
    return version


def _read(engine: Engine) -> int | None:
    row = fetch_row(engine, VERSION_SQL)
    return None if row is None else row[0]


def placeholder(engine: Engine) -> str:
    """The DBAPI's positional parameter marker for ``fetch_row`` statements."""
    return "?" if engine.dialect.paramstyle == "qmark" else "%s"


def fetch_row(engine: Engine, sql: str, params: tuple = ()) -> tuple | None:
    """The first row of one read statement, or None.

    One statement on a pooled DBAPI connection, in autocommit on PostgreSQL: through a SQLAlchemy Connection
    the same read cost BEGIN and ROLLBACK round trips on top and 2.4x the client CPU (~210 vs ~87 µs), the
    largest part of a cached list request. Values come back as the driver returns them. Errors come out as
    SQLAlchemy's, with a dropped connection invalidated, as a Connection would raise them (the API answers
    503 and the list retries once)."""
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        raw = engine.raw_connection()
    except dbapi_error as exc:  # the server is unreachable
        raise DBAPIError.instance(None, None, exc, dbapi_error, dialect=engine.dialect) from exc
    driver = raw.driver_connection
    autocommit = engine.dialect.name == "postgresql"
    cursor = None
    try:
        if autocommit:
            driver.autocommit = True  # a client-side flag in psycopg2: no BEGIN, nothing to roll back
        cursor = driver.cursor()
        cursor.execute(sql, params)
        row = cursor.fetchone()
        cursor.close()
        return None if row is None else tuple(row)
    except dbapi_error as exc:
        invalidated = engine.dialect.is_disconnect(exc, driver, cursor)
        if invalidated:
            raw.invalidate(exc)
        # parameters hidden: a caller's may be derived from a credential (the API-key digest)
        raise DBAPIError.instance(sql, params, exc, dbapi_error, connection_invalidated=invalidated,
                                  hide_parameters=True, dialect=engine.dialect) from exc
    finally:
        if autocommit and not driver.closed:  # the pool's other users expect transactions
            driver.autocommit = False
        raw.close()


class RenderedPageCache:
    """Bounded, thread-safe LRU of rendered list pages (whatever the caller's ``render`` made, with its size in
    bytes). Keys start with the change version: a write makes every older entry unreachable, and the first key
    of a new version empties the cache so dead pages do not sit in memory."""

    def __init__(self, max_entries: int = 256, max_bytes: int = 8 * 2**20):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._version: object = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: tuple) -> object | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
            return found[0]

    def put(self, key: tuple, value: object, size: int) -> None:
        if size > self.max_bytes:
            return
        with self._lock:
            if key[0] != self._version:
                self._entries.clear()
                self._bytes, self._version = 0, key[0]
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= previous[1]
            self._entries[key] = (value, size)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _key, (_value, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
