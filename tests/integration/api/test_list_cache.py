"""GET /consumers/ answers from a cache of rendered pages keyed on kcm_changes.version, which database triggers
move on every write to consumers or downstream_processors (migration 0004). Whoever writes — the API, the
supervisor's status write (which leaves updated_at alone), hand-written SQL — the very next list shows it."""
from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from api.context import EXTENSION
from api.services.page_cache import RenderedPageCache
from schema.db import make_engine, make_session_factory
from schema.migrate import downgrade, upgrade
from schema.models import ReplicaSlot
from schema.states import ProcessState
from supervisor.desired import write_status
from tests.integration.api.conftest import VALID_CONSUMER, make_app

COLLECTOR = {"processor_type": "test_collector", "config": {"path": "/tmp/kcm-cache"}}


@pytest.fixture(params=["postgresql", "sqlite"])
def cached_app(request, redis_client, redis_test_url):
    if request.param == "postgresql":
        request.getfixturevalue("pg_clean")
        url = request.getfixturevalue("pg_url")
    else:
        url = request.getfixturevalue("sqlite_url")
    app = make_app(url, redis_test_url)
    yield app
    app.extensions[EXTENSION].close()


@pytest.fixture
def kcm(cached_app):
    return cached_app.extensions[EXTENSION]


@pytest.fixture
def client(cached_app):
    return cached_app.test_client()


def create(client, **fields) -> dict:
    response = client.post("/consumers/", json={**VALID_CONSUMER, **fields})
    assert response.status_code == 201, response.json
    return response.json


def listed(client, query: str = "") -> tuple[list[dict], dict]:
    response = client.get(f"/consumers/{query}")
    assert response.status_code == 200, response.json
    return response.json, json.loads(response.headers["X-Pagination"])


def by_id(items: list[dict]) -> dict[str, dict]:
    return {item["id"]: item for item in items}


def warm(client, query: str = "") -> list[dict]:
    """Two identical requests: the second is answered from the cache (asserted where it matters below)."""
    first = listed(client, query)
    assert listed(client, query) == first
    return first[0]


def test_an_unchanged_list_is_answered_without_reading_the_page(kcm, client, monkeypatch):
    create(client, topic="cached")
    items = warm(client)

    def no_page_read(*args, **kwargs):
        raise AssertionError("the page was read although nothing changed")

    monkeypatch.setattr(kcm.consumers, "page", no_page_read)
    assert listed(client)[0] == items
    assert len(kcm.consumers.page_cache) == 1


def test_api_writes_show_in_the_very_next_list(client):
    first = create(client, topic="t-first")
    warm(client)
    second = create(client, topic="t-second")
    assert set(by_id(listed(client)[0])) == {first["id"], second["id"]}

    warm(client)
    assert client.patch(f"/consumers/{first['id']}/", json={"topic": "t-renamed"}).status_code == 200
    assert by_id(listed(client)[0])[first["id"]]["topic"] == "t-renamed"

    warm(client)
    assert client.post(f"/consumers/{first['id']}/start").status_code in (200, 202)
    after_start = by_id(listed(client)[0])[first["id"]]
    assert after_start["desired_state"] == "running" and after_start["generation"] == 2

    warm(client, "?topic=t-second")
    assert client.delete(f"/consumers/{second['id']}/").status_code == 204
    items, pagination = listed(client, "?topic=t-second")
    assert items == [] and pagination["total"] == 0
    assert set(by_id(listed(client)[0])) == {first["id"]}


def _supervisor_writes(sessions, consumer_id: str, state: ProcessState) -> None:
    """What a supervisor holding replica 0's slot does: a fenced write of the replica's state, which folds
    ``consumers.status`` (supervisor/desired.py)."""
    with sessions() as session, session.begin():
        session.merge(ReplicaSlot(consumer_id=uuid.UUID(consumer_id), replica=0, holder="test-supervisor", epoch=1))
    assert write_status(sessions, consumer_id, 0, holder="test-supervisor", epoch=1, state=state).accepted


def test_the_supervisors_status_write_shows_in_the_very_next_list(kcm, client):
    consumer = create(client)
    assert warm(client)[0]["status"] == "INACTIVE"
    _supervisor_writes(kcm.consumers.sessions, consumer["id"], ProcessState.RUNNING)  # updated_at stays as it was
    item = listed(client)[0][0]
    assert item["status"] == "ACTIVE" and item["updated_at"] == consumer["updated_at"]


def test_hand_written_sql_on_consumers_and_processors_shows_in_the_very_next_list(kcm, client):
    create(client, downstream_processors=[COLLECTOR])
    warm(client)
    with kcm.engine.begin() as conn:
        conn.execute(sa.text("UPDATE consumers SET replicas = 3"))
    assert listed(client)[0][0]["replicas"] == 3

    warm(client)
    with kcm.engine.begin() as conn:
        conn.execute(sa.text("UPDATE downstream_processors SET on_error = 'skip'"))
    assert listed(client)[0][0]["downstream_processors"][0]["on_error"] == "skip"

    warm(client)
    with kcm.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM downstream_processors"))
    assert listed(client)[0][0]["downstream_processors"] == []

    warm(client)
    create(client, topic="second")
    warm(client)
    with kcm.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM consumers WHERE topic <> 'second'"))
    assert [item["topic"] for item in listed(client)[0]] == ["second"]


def test_processor_changes_through_the_api_show_in_the_very_next_list(client):
    consumer = create(client)
    base = f"/consumers/{consumer['id']}/processors/"
    warm(client)
    processor = client.post(base, json=COLLECTOR).json
    assert [p["id"] for p in listed(client)[0][0]["downstream_processors"]] == [processor["id"]]

    warm(client)
    assert client.patch(f"{base}{processor['id']}/", json={"config": {"path": "/tmp/kcm-other"}}).status_code == 200
    assert listed(client)[0][0]["downstream_processors"][0]["config"] == {"path": "/tmp/kcm-other"}

    warm(client)
    assert client.delete(f"{base}{processor['id']}/").status_code == 204
    assert listed(client)[0][0]["downstream_processors"] == []


def test_a_write_between_the_version_read_and_the_page_read_is_not_hidden(kcm, client, monkeypatch):
    """The race the ordering exists for: the page read after the version may be newer than its key, never
    older, so the request after the write (which reads the new version) still sees it."""
    consumer = create(client, topic="before")
    warm(client)
    create(client, topic="make-a-miss")  # the next request must read the page
    read_page = kcm.consumers.page

    def write_then_read(*args, **kwargs):
        with kcm.engine.begin() as conn:
            conn.execute(sa.text("UPDATE consumers SET topic = 'during' WHERE topic = 'before'"))
        return read_page(*args, **kwargs)

    monkeypatch.setattr(kcm.consumers, "page", write_then_read)
    assert by_id(listed(client)[0])[consumer["id"]]["topic"] == "during"
    monkeypatch.setattr(kcm.consumers, "page", read_page)
    assert by_id(listed(client)[0])[consumer["id"]]["topic"] == "during"


def test_each_filter_and_page_is_its_own_entry_and_the_cache_stays_bounded(kcm, client):
    for n in range(6):
        create(client, topic=f"t-{n % 2}")
    kcm.consumers.page_cache = RenderedPageCache(max_entries=4)
    pages = {query: listed(client, query) for query in
             ("?page_size=2", "?page_size=2&page=2", "?page_size=2&page=3", "?topic=t-0", "?topic=t-1", "")}
    assert len(kcm.consumers.page_cache) == 4
    for query, expected in pages.items():  # evicted or not, every answer is the right one
        assert listed(client, query) == expected, query
    assert [item["topic"] for item in pages["?topic=t-1"][0]] == ["t-1"] * 3
    assert pages["?page_size=2&page=3"][1]["page"] == 3


def test_without_a_version_row_nothing_is_cached_and_the_list_stays_right(kcm, client):
    create(client, topic="no-version")
    with kcm.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM kcm_changes"))
    assert listed(client)[0][0]["topic"] == "no-version"
    assert len(kcm.consumers.page_cache) == 0
    with kcm.engine.begin() as conn:  # the next write puts the row back
        conn.execute(sa.text("UPDATE consumers SET topic = 'back'"))
    assert listed(client)[0][0]["topic"] == "back"
    assert len(kcm.consumers.page_cache) == 1


# ---------------------------------------------------------------------- the cache itself (pure logic)
def test_page_cache_evicts_least_recently_used_beyond_its_entry_and_byte_bounds():
    cache = RenderedPageCache(max_entries=3, max_bytes=100)
    for n in range(3):
        cache.put((1, n), f"page-{n}", 10)
    assert cache.get((1, 0)) == "page-0"  # now the most recently used
    cache.put((1, 3), "page-3", 10)
    assert cache.get((1, 1)) is None and cache.get((1, 0)) == "page-0" and len(cache) == 3
    cache.put((1, 4), "big", 95)
    assert len(cache) == 1 and cache.size_bytes == 95
    cache.put((1, 5), "too big to keep", 101)
    assert cache.get((1, 5)) is None and len(cache) == 1


def test_page_cache_drops_every_entry_of_an_older_version():
    cache = RenderedPageCache()
    cache.put((7, "a"), "old-a", 1)
    cache.put((7, "b"), "old-b", 1)
    cache.put((8, "a"), "new-a", 1)
    assert cache.get((7, "b")) is None and cache.get((8, "a")) == "new-a" and cache.size_bytes == 1


# ---------------------------------------------------------------------- migration 0004
def _version(url: str):
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version FROM kcm_changes WHERE id = 1")).scalar_one()
    finally:
        engine.dispose()


def _status_write_moves_the_version(url: str, state: ProcessState) -> None:
    """``state`` must fold to another status than the consumer has (an unchanged status writes nothing)."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    try:
        with engine.begin() as conn:  # a UUID on PostgreSQL, 32 hex digits on SQLite: uuid.UUID takes both
            consumer_id = conn.execute(sa.text("SELECT id FROM consumers")).scalars().first()
        before = _version(url)
        _supervisor_writes(sessions, str(consumer_id), state)
        assert _version(url) != before
    finally:
        engine.dispose()


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_migration_0004_goes_down_and_up_again_with_working_triggers(request, database, redis_client,
                                                                     redis_test_url, tmp_path):
    if database == "postgresql":
        request.getfixturevalue("pg_clean")
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
        upgrade(url)
    app = make_app(url, redis_test_url)
    try:
        create(app.test_client())
    finally:
        app.extensions[EXTENSION].close()
    _status_write_moves_the_version(url, ProcessState.FATAL)

    downgrade(url, "0003")
    engine = make_engine(url)
    try:
        assert "kcm_changes" not in sa.inspect(engine).get_table_names()
        with engine.begin() as conn:  # no trigger left behind that would write to a missing table
            conn.execute(sa.text("UPDATE consumers SET replicas = 2"))
    finally:
        engine.dispose()
    app = make_app(url, redis_test_url)
    try:  # an API on a database short of 0004 says what to do, as for any missing table
        response = app.test_client().get("/consumers/")
        assert response.status_code == 503 and "schema.migrate" in response.json["message"]
    finally:
        app.extensions[EXTENSION].close()

    upgrade(url)
    _status_write_moves_the_version(url, ProcessState.RUNNING)  # ERROR before: now another status
    if database == "sqlite":
        downgrade(url, "base")
        upgrade(url)
        assert isinstance(_version(url), int)


def test_a_query_string_is_parsed_once_and_an_invalid_one_every_time(client, monkeypatch):
    from webargs.flaskparser import FlaskParser

    parsed = []
    parse = FlaskParser.parse

    def counting_parse(self, argmap, req=None, **kwargs):
        parsed.append(kwargs.get("location"))
        return parse(self, argmap, req, **kwargs)

    monkeypatch.setattr(FlaskParser, "parse", counting_parse)
    topic = f"memo-{uuid.uuid4().hex}"  # the parser (and its memo) is the blueprint's, shared by every app
    create(client, topic=topic)
    query = f"?topic={topic}&page_size=3&unused=ignored"
    first = listed(client, query)
    assert [item["topic"] for item in first[0]] == [topic]
    count = len(parsed)
    assert listed(client, query) == first and len(parsed) == count  # filters and page from the memo
    assert listed(client, f"?topic={topic}-other&page_size=3") == ([], {"total": 0, "total_pages": 0})
    assert len(parsed) > count
    for _ in range(2):
        response = client.get("/consumers/?status=SLEEPING")
        assert response.status_code == 422 and "status" in response.json["errors"]["query"]
