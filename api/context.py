"""The per-application objects views reach through ``services()``: one engine, the Redis clients, the services."""
from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from api.services.api_keys import ApiKeyService
from api.services.audit import AuditService
from api.services.commands import CommandPublisher
from api.services.consumers import ConsumerService
from api.services.dead_letters import DeadLetterService
from api.services.processors import ProcessorService
from api.services.status import StatusService
from schema.db import make_engine, make_session_factory
from schema.dead_letter_store import DeadLetterStore
from schema.settings import Settings

EXTENSION = "kcm"
REQUIRED_TABLES = {"consumers", "downstream_processors"}


class SchemaNotMigrated(RuntimeError):
    """The database is reachable but has no kcm tables: the API does not migrate on its own."""


@dataclass
class Services:
    settings: Settings
    engine: Engine
    redis: redis.Redis
    consumers: ConsumerService
    processors: ProcessorService
    status: StatusService
    dead_letters: DeadLetterService
    api_keys: ApiKeyService
    audit: AuditService

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()
        self.dead_letters.close()


def make_redis(url: str, *, decode_responses: bool = True) -> redis.Redis:
    # fail fast, no retries: a request must not hang on a Redis that is down (the command is a wake-up only)
    return redis.Redis.from_url(
        url, socket_connect_timeout=1.0, socket_timeout=2.0, retry=Retry(NoBackoff(), 0),
        decode_responses=decode_responses,
    )


def check_schema(engine: Engine) -> None:
    """Refuse to start on a reachable but unmigrated database; an unreachable one is reported per request."""
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
    except OperationalError:
        return
    finally:
        engine.dispose()  # no pooled connection may survive into a forked worker (gunicorn --preload)
    missing = REQUIRED_TABLES - tables
    if missing:
        raise SchemaNotMigrated(
            f"database {engine.url.render_as_string(hide_password=True)} has no "
            f"{', '.join(sorted(missing))} table(s): run `python -m schema.migrate` (or `make migrate`) first"
        )


def build_services(settings: Settings) -> Services:
    # no bound value in any database error's text: a parameter may come from a credential or a config
    engine = make_engine(settings.database_url, hide_parameters=True)
    check_schema(engine)
    sessions = make_session_factory(engine)
    client = make_redis(settings.redis_url)
    publisher = CommandPublisher(client)
    consumers = ConsumerService(sessions, publisher, max_consumers=settings.max_consumers,
                                max_replicas=settings.max_replicas)
    # rq stores pickled bytes: the dead-letter store needs its own client, without decode_responses
    rq_client = make_redis(settings.redis_url, decode_responses=False)
    return Services(
        settings=settings,
        engine=engine,
        redis=client,
        consumers=consumers,
        processors=ProcessorService(sessions, publisher),
        status=StatusService(client),
        dead_letters=DeadLetterService(consumers, DeadLetterStore(rq_client)),
        api_keys=ApiKeyService(sessions),
        audit=AuditService(sessions),
    )


def services() -> Services:
    return current_app.extensions[EXTENSION]
