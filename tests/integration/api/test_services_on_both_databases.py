"""The service layer and the models on PostgreSQL and on SQLite (the embedded default), plus an API round trip
on SQLite: the same behaviour on both."""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from api.context import EXTENSION
from api.services.errors import Invalid, NotFound
from schema.models import Consumer, DownstreamProcessor
from schema.states import ConsumerStatus, DesiredState
from tests.integration.api.conftest import VALID_CONSUMER, consumer_data, make_app

COLLECTOR = {"processor_type": "test_collector", "config": {"path": "/tmp/kcm-x"}, "on_error": "retry"}


def test_create_and_read_back_with_processors_in_order(kcm):
    created = kcm.consumers.create(consumer_data(downstream_processors=[
        {**COLLECTOR, "config": {"path": "/tmp/b"}, "position": 1},
        {**COLLECTOR, "config": {"path": "/tmp/a"}, "position": 0},
    ]))
    assert created.status == ConsumerStatus.INACTIVE and created.desired_state == DesiredState.STOPPED
    assert created.generation == 1
    read = kcm.consumers.get(created.id)
    assert [p.config["path"] for p in read.downstream_processors] == ["/tmp/a", "/tmp/b"]
    assert read.created_at is not None and read.updated_at is not None


def test_generation_rules(kcm):
    consumer = kcm.consumers.create(consumer_data())
    assert kcm.consumers.start(consumer.id).consumer.generation == 2
    again = kcm.consumers.start(consumer.id)
    assert again.changed is False and again.consumer.generation == 2
    assert kcm.consumers.update(consumer.id, {"replicas": 2}).generation == 3
    assert kcm.consumers.update(consumer.id, {"replicas": 2}).generation == 3  # same value: no restart
    kcm.processors.create(consumer.id, dict(COLLECTOR))
    assert kcm.consumers.get(consumer.id).generation == 4
    assert kcm.consumers.restart(consumer.id).consumer.generation == 5
    stopped = kcm.consumers.stop(consumer.id)
    assert stopped.consumer.generation == 6 and stopped.consumer.desired_state == DesiredState.STOPPED
    assert kcm.consumers.update(consumer.id, {"topic": "other"}).generation == 6  # stopped: no bump


def test_list_filters_and_pages(kcm):
    for i in range(5):
        kcm.consumers.create(consumer_data(topic="even" if i % 2 == 0 else "odd"))
    items, total = kcm.consumers.list({"topic": "even"}, 0, 2)
    assert total == 3 and len(items) == 2 and all(c.topic == "even" for c in items)
    items, total = kcm.consumers.list({"topic": "even"}, 2, 2)
    assert total == 3 and len(items) == 1
    assert kcm.consumers.list({"status": ConsumerStatus.ERROR}, 0, 10) == ([], 0)
    assert kcm.consumers.list({}, 10**30, 10) == ([], 5)


def test_delete_cascades_to_processors(kcm):
    consumer = kcm.consumers.create(consumer_data(downstream_processors=[dict(COLLECTOR), dict(COLLECTOR)]))
    kcm.consumers.delete(consumer.id)
    with pytest.raises(NotFound):
        kcm.consumers.get(consumer.id)
    with kcm.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(DownstreamProcessor.__table__)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(Consumer.__table__)).scalar() == 0


def test_missing_rows_raise_not_found(kcm):
    consumer = kcm.consumers.create(consumer_data())
    for call in (lambda: kcm.consumers.get(uuid.uuid4()), lambda: kcm.consumers.stop(uuid.uuid4()),
                 lambda: kcm.consumers.delete(uuid.uuid4()),
                 lambda: kcm.processors.get(consumer.id, uuid.uuid4()),
                 lambda: kcm.processors.delete(consumer.id, uuid.uuid4())):
        with pytest.raises(NotFound):
            call()


def test_patch_keeps_exactly_one_broker_form(kcm):
    consumer = kcm.consumers.create(consumer_data())
    switched = kcm.consumers.update(consumer.id, {"bootstrap_servers": ["a:1", "b:2"]})
    assert switched.broker_ip is None and switched.broker_port is None
    with pytest.raises(Invalid) as caught:
        kcm.consumers.update(consumer.id, {"bootstrap_servers": None})
    assert "broker_ip" in caught.value.errors["json"]


def test_processor_patch_revalidates_config(kcm):
    consumer = kcm.consumers.create(consumer_data(downstream_processors=[dict(COLLECTOR)]))
    pid = consumer.downstream_processors[0].id
    with pytest.raises(Invalid) as caught:
        kcm.processors.update(consumer.id, pid, {"config": {}})
    assert "path" in caught.value.errors["json"]["config"]
    updated = kcm.processors.update(consumer.id, pid, {"config": {"path": "/tmp/new"}, "on_error": "skip"})
    assert updated.config == {"path": "/tmp/new"} and updated.on_error == "skip"


def test_api_round_trip_on_sqlite(sqlite_client, commands):
    created = sqlite_client.post("/consumers", json={
        **VALID_CONSUMER, "downstream_processors": [{"processor_type": "test_collector",
                                                     "config": {"path": "/tmp/s"}}]})
    assert created.status_code == 201, created.json
    cid = created.json["id"]
    assert created.json["created_at"].endswith("+00:00")  # SQLite's naive times are rendered as UTC
    assert sqlite_client.post(f"/consumers/{cid}/start").json["generation"] == 2
    assert sqlite_client.get("/consumers/?desired_state=running").json[0]["id"] == cid
    assert sqlite_client.get(f"/consumers/{cid}/status").json["state"] == "UNKNOWN"
    assert sqlite_client.delete(f"/consumers/{cid}").status_code == 204
    assert [c["action"] for c in commands()] == ["create", "start", "delete"]


def test_sqlite_database_without_tables_is_refused_at_start(tmp_path, redis_test_url):
    from api.context import SchemaNotMigrated

    with pytest.raises(SchemaNotMigrated):
        make_app(f"sqlite:///{tmp_path / 'blank.sqlite3'}", redis_test_url)


def test_an_unreachable_database_is_503_not_500(redis_test_url):
    app = make_app("postgresql+psycopg2://kcm:wrong@127.0.0.1:1/kcm", redis_test_url)
    try:
        response = app.test_client().get("/consumers/")
        assert response.status_code == 503
        assert set(response.json) == {"code", "status", "message", "errors"}
        assert "wrong" not in response.get_data(as_text=True)
    finally:
        app.extensions[EXTENSION].close()
