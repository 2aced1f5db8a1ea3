"""database_sync's offset-store hooks (``stored_offsets``/``reset_stored_offsets``) on both write paths: kcm's
PostgreSQL through psycopg2 and kcm's embedded SQLite through SQLAlchemy. A reset moves rows back as well as
forward, a forget deletes only this processor's rows of this topic, and a processor without exactly_once keeps
nothing."""
from __future__ import annotations

import dataclasses

import pytest

from processors.context import ProcessorContext
from processors.database_sync import DatabaseSyncProcessor
from schema.settings import Settings


@pytest.fixture(params=["postgresql", "sqlite"])
def context(request, pg_clean, pg_url, sqlite_url):
    url = pg_url if request.param == "postgresql" else sqlite_url
    settings = dataclasses.replace(Settings.from_env(), database_url=url)

    def make(topic: str = "orders", consumer_id: str = "c-1") -> ProcessorContext:
        return ProcessorContext(settings=settings, consumer_id=consumer_id, bootstrap_servers="127.0.0.1:19092",
                                topic=topic)
    return make


def config(**overrides) -> dict:
    return DatabaseSyncProcessor.validate_config({"table": "offsets_store_sink", "exactly_once": True, **overrides})


def test_a_reset_moves_back_and_forward_and_a_forget_touches_only_its_own_rows(context):
    cls, own = DatabaseSyncProcessor, context()
    cls.reset_stored_offsets(config(), own, "p-1", {0: 500, 1: 700})
    cls.reset_stored_offsets(config(), context("other-topic"), "p-1", {0: 9})
    cls.reset_stored_offsets(config(), own, "p-2", {0: 11})
    cls.reset_stored_offsets(config(), context(consumer_id="c-2"), "p-1", {0: 12})
    assert cls.stored_offsets(config(), own, "p-1") == {0: 500, 1: 700}

    cls.reset_stored_offsets(config(), own, "p-1", {0: 40})  # back; partition 1 untouched
    assert cls.stored_offsets(config(), own, "p-1") == {0: 40, 1: 700}
    cls.reset_stored_offsets(config(), own, "p-1", {1: 900})  # forward
    assert cls.stored_offsets(config(), own, "p-1") == {0: 40, 1: 900}

    cls.reset_stored_offsets(config(), own, "p-1", None)
    assert cls.stored_offsets(config(), own, "p-1") == {}
    assert cls.stored_offsets(config(), context("other-topic"), "p-1") == {0: 9}
    assert cls.stored_offsets(config(), own, "p-2") == {0: 11}
    assert cls.stored_offsets(config(), context(consumer_id="c-2"), "p-1") == {0: 12}


def test_without_exactly_once_nothing_is_kept_or_written(context):
    plain = config(exactly_once=False)
    assert DatabaseSyncProcessor.stored_offsets(plain, context(), "p-1") is None
    DatabaseSyncProcessor.reset_stored_offsets(plain, context(), "p-1", {0: 5})
    assert DatabaseSyncProcessor.stored_offsets(config(), context(), "p-1") == {}
