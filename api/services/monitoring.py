"""What the API reads about monitoring: a consumer's lag, health and throughput (written by the lag monitor), the live
supervisors (their heartbeat hashes) and its own readiness. Reads only: the API writes none of these keys."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from api.services.errors import Unavailable
from api.services.status import iso_utc
from schema import keys
from schema.health import Verdict

NO_MONITOR = "the lag monitor is not running (start the Procfile's `lag` process: python -m supervisor.lag)"
NOT_SAMPLED = "the lag monitor has not sampled this consumer yet"


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _json(value) -> dict | None:
    try:
        parsed = json.loads(_text(value)) if value else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def lag_out(document: dict | None) -> dict | None:
    if document is None:
        return None
    return {
        "sampled_at": iso_utc(document.get("sampled_at")),
        "total_messages": document.get("total_messages"),
        "max_seconds": document.get("max_seconds"),
        "partitions": [{name: p.get(name) for name in ("partition", "committed", "high_watermark", "lag_messages",
                                                        "lag_seconds", "verdict")}
                       for p in document.get("partitions") or ()],
    }


def throughput_out(document: dict | None) -> dict | None:
    if document is None:
        return None
    return {"sampled_at": iso_utc(document.get("sampled_at")),
            **{name: document.get(name) for name in ("messages_per_second", "bytes_per_second", "window_seconds")}}


def health_out(document: dict | None, monitor_alive: bool) -> dict:
    if document is None:
        return {"verdict": Verdict.UNKNOWN.value, "reason": NOT_SAMPLED if monitor_alive else NO_MONITOR,
                "since": None}
    return {"verdict": document.get("verdict", Verdict.UNKNOWN.value), "reason": document.get("reason", ""),
            "since": iso_utc(document.get("since"))}


class MonitoringService:
    def __init__(self, client: redis.Redis, engine: Engine | None = None):
        self.client = client
        self.engine = engine

    def _redis(self, what: str, fn):
        try:
            return fn()
        except redis.RedisError as exc:
            raise Unavailable(f"Redis is unreachable, {what} cannot be read ({type(exc).__name__})") from exc

    def consumer(self, consumer_id) -> dict:
        """``{"lag": ..., "health": ..., "throughput": ...}`` of one consumer, for GET /consumers/{id}/status/."""
        def read():
            pipe = self.client.pipeline(transaction=False)
            pipe.get(keys.lag_key(consumer_id))
            pipe.get(keys.health_key(consumer_id))
            pipe.exists(keys.LAG_MONITOR_KEY)
            pipe.get(keys.throughput_key(consumer_id))
            return pipe.execute()

        lag, health, alive, throughput = self._redis("the lag", read)
        return {"lag": lag_out(_json(lag)), "health": health_out(_json(health), bool(alive)),
                "throughput": throughput_out(_json(throughput))}

    def supervisors(self) -> list[dict]:
        """The live supervisors: ids in the index whose heartbeat hash has not expired (the index is only an index)."""
        def read():
            ids = sorted(_text(i) for i in self.client.smembers(keys.SUPERVISORS_INDEX))
            pipe = self.client.pipeline(transaction=False)
            for sid in ids:
                pipe.hgetall(keys.supervisor_key(sid))
            return list(zip(ids, pipe.execute(), strict=True))

        found = []
        for sid, raw in self._redis("the supervisors", read):
            if not raw:
                continue
            fields = {_text(k): _text(v) for k, v in raw.items()}
            found.append({"id": sid, "host": fields.get("host"), "pid": _int(fields.get("pid")),
                          "started_at": iso_utc(fields.get("started_at")),
                          "last_heartbeat": iso_utc(fields.get("last_heartbeat")),
                          "replicas": _int(fields.get("replicas"))})
        return found


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


READY_CONNECT_TIMEOUT_SECONDS = 2  # libpq's minimum


@dataclass
class Readiness:
    """GET /readyz: the database answers and is migrated to the newest revision, Redis answers."""

    engine: Engine
    client: redis.Redis
    database_url: str

    @cached_property
    def heads(self) -> set[str]:
        from alembic.script import ScriptDirectory

        from schema.migrate import alembic_config

        return set(ScriptDirectory.from_config(alembic_config(self.database_url)).get_heads())

    @cached_property
    def probe_engine(self) -> Engine:
        """A connection of its own per check, bounded: a partitioned database must not hold a gunicorn worker
        (the liveness probe needs one), and a pooled connection proves nothing about the server now."""
        if self.engine.url.get_backend_name() != "postgresql":
            return self.engine
        return create_engine(self.engine.url, poolclass=NullPool, hide_parameters=True,
                             connect_args={"connect_timeout": READY_CONNECT_TIMEOUT_SECONDS})

    def checks(self) -> dict[str, dict]:
        return {"database": self._database(), "redis": self._redis()}

    def _database(self) -> dict:
        from alembic.migration import MigrationContext

        try:
            with self.probe_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                current = set(MigrationContext.configure(conn).get_current_heads())
        except Exception as exc:  # noqa: BLE001 (any failure means not ready; only its type is shown)
            return {"ok": False, "detail": f"unreachable ({type(exc).__name__})"}
        if current != self.heads:
            return {"ok": False, "detail": f"migrations not at head (at {', '.join(sorted(current)) or 'none'}, "
                                           f"head {', '.join(sorted(self.heads))}): run python -m schema.migrate"}
        return {"ok": True, "detail": f"reachable, migrations at head {', '.join(sorted(self.heads))}"}

    def _redis(self) -> dict:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            return {"ok": False, "detail": f"unreachable ({type(exc).__name__})"}
        return {"ok": True, "detail": "reachable"}
