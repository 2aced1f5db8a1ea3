"""Wake-up commands on the Redis stream: one after each committed change, none after a failed call, and
the HTTP call still succeeds when Redis is down."""
from __future__ import annotations

import logging
import time
import uuid

from schema import keys
from schema.states import CommandAction
from tests.integration.api.conftest import VALID_CONSUMER

COLLECTOR = {"processor_type": "test_collector", "config": {"path": "/tmp/kcm-test"}}


def test_every_mutating_call_appends_one_command_after_commit(client, commands, redis_client):
    before = time.time()
    consumer = client.post("/consumers/", json=VALID_CONSUMER).json
    cid = consumer["id"]
    calls = [
        (lambda: client.patch(f"/consumers/{cid}/", json={"topic": "t2"}), CommandAction.UPDATE, 1),
        (lambda: client.post(f"/consumers/{cid}/start/"), CommandAction.START, 2),
        (lambda: client.post(f"/consumers/{cid}/start"), CommandAction.START, 2),  # idempotent wake-up
        (lambda: client.patch(f"/consumers/{cid}", json={"replicas": 2}), CommandAction.UPDATE, 3),
        (lambda: client.post(f"/consumers/{cid}/processors/", json=COLLECTOR), CommandAction.UPDATE, 4),
        (lambda: client.post(f"/consumers/{cid}/restart/"), CommandAction.RESTART, 5),
        (lambda: client.post(f"/consumers/{cid}/stop/"), CommandAction.STOP, 6),
        (lambda: client.delete(f"/consumers/{cid}/"), CommandAction.DELETE, 6),
    ]
    expected = [{"consumer_id": cid, "generation": "1", "action": "create"}]
    for call, action, generation in calls:
        response = call()
        assert response.status_code in (200, 201, 204), response.json
        expected.append({"consumer_id": cid, "generation": str(generation), "action": action.value})
        got = commands()
        assert [{k: c[k] for k in ("consumer_id", "generation", "action")} for c in got] == expected
    assert all(before <= float(c["ts"]) <= time.time() for c in commands())
    # the stream is capped (MAXLEN ~); an approximate trim leaves at least the cap
    assert redis_client.xlen(keys.COMMAND_STREAM) <= keys.COMMAND_STREAM_MAXLEN


def test_processor_changes_publish_update_commands(client, commands, create_consumer):
    consumer = create_consumer()
    cid = consumer["id"]
    processor = client.post(f"/consumers/{cid}/processors/", json=COLLECTOR).json
    client.patch(f"/consumers/{cid}/processors/{processor['id']}/", json={"on_error": "skip"})
    client.delete(f"/consumers/{cid}/processors/{processor['id']}/")
    assert [c["action"] for c in commands()] == ["create", "update", "update", "update"]


def test_failed_calls_append_nothing(client, commands, create_consumer):
    consumer = create_consumer()
    cid = consumer["id"]
    baseline = commands()
    missing = uuid.uuid4()
    failures = [
        client.post("/consumers/", json={**VALID_CONSUMER, "broker_port": 0}),
        client.post("/consumers/", data="{", content_type="application/json"),
        client.post("/consumers/", data="x", content_type="text/plain"),
        client.patch(f"/consumers/{cid}/", json={"generation": 9}),
        client.patch(f"/consumers/{missing}/", json={"topic": "x"}),
        client.delete(f"/consumers/{missing}/"),
        client.post(f"/consumers/{missing}/start/"),
        client.post(f"/consumers/{missing}/stop/"),
        client.post(f"/consumers/{missing}/restart/"),
        client.post(f"/consumers/{cid}/processors/", json={"processor_type": "nope"}),
        client.post(f"/consumers/{missing}/processors/", json=COLLECTOR),
        client.patch(f"/consumers/{cid}/processors/{missing}/", json={"on_error": "skip"}),
        client.delete(f"/consumers/{cid}/processors/{missing}/"),
    ]
    assert all(400 <= r.status_code < 500 for r in failures), [r.status_code for r in failures]
    assert commands() == baseline


def test_mutating_calls_succeed_when_redis_is_down_and_the_failure_is_logged(redis_down_app, caplog):
    client = redis_down_app.test_client()
    with caplog.at_level(logging.WARNING, logger="kcm.api.commands"):
        created = client.post("/consumers/", json=VALID_CONSUMER)
        assert created.status_code == 201
        cid = created.json["id"]
        assert client.post(f"/consumers/{cid}/start/").status_code == 200
        assert client.patch(f"/consumers/{cid}/", json={"topic": "t3"}).status_code == 200
        assert client.post(f"/consumers/{cid}/processors/", json=COLLECTOR).status_code == 201
        assert client.post(f"/consumers/{cid}/restart/").status_code == 200
        assert client.delete(f"/consumers/{cid}/").status_code == 204
    published = [r for r in caplog.records if "command not published" in r.getMessage()]
    assert len(published) == 6
    assert all(cid in r.getMessage() for r in published)
    assert client.get(f"/consumers/{cid}/").status_code == 404  # the delete did commit


def test_publish_failure_log_never_shows_the_redis_password(pg_clean, pg_url, caplog):
    from api.context import EXTENSION
    from tests.integration.api.conftest import closed_port_url, make_app

    url = closed_port_url().replace("redis://", "redis://:s3cr3t-pass@")
    app = make_app(pg_url, url)
    try:
        with caplog.at_level(logging.DEBUG):
            assert app.test_client().post("/consumers/", json=VALID_CONSUMER).status_code == 201
    finally:
        app.extensions[EXTENSION].close()
    assert "command not published" in caplog.text
    assert "s3cr3t-pass" not in caplog.text
