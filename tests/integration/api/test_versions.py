"""Configuration history and rollback: every change writes a version in its transaction, the diff names what
changed, and a rollback writes a new version equal to the old one (history is never rewritten)."""
from __future__ import annotations

import json

import sqlalchemy as sa

from tests.integration.api.conftest import VALID_CONSUMER, make_app

FILE_SINK = {"processor_type": "file_sink", "config": {"file_path": "orders.log"}}


def _versions(client, ref) -> list[dict]:
    response = client.get(f"/consumers/{ref}/versions/", query_string={"page_size": 100})
    assert response.status_code == 200, response.json
    return response.json


def test_two_patches_then_a_rollback_to_version_1_restores_it_and_restarts_once(client, commands):
    created = client.post("/consumers/", json={**VALID_CONSUMER, "name": "orders-archive",
                                               "downstream_processors": [FILE_SINK]}).json
    cid, processor_id = created["id"], created["downstream_processors"][0]["id"]
    assert client.post(f"/consumers/{cid}/start/").status_code == 200
    client.patch(f"/consumers/{cid}/", json={"replicas": 3, "client_id": "c2"})
    client.patch(f"/consumers/{cid}/processors/{processor_id}/", json={"on_error": "skip"})
    before_rollback = client.get(f"/consumers/{cid}/").json
    sent = len(commands())

    response = client.post("/consumers/orders-archive/rollback/", json={"version": 1})
    assert response.status_code == 200, response.json
    restored = response.json
    assert restored["generation"] == before_rollback["generation"] + 1  # one restart, on a new generation
    new_commands = commands()[sent:]
    assert [(c["action"], c["generation"]) for c in new_commands] == [("update", str(restored["generation"]))]

    versions = _versions(client, cid)
    assert [v["version"] for v in versions] == [4, 3, 2, 1]  # newest first; nothing rewritten
    assert versions[0]["summary"] == "rollback to version 1"
    assert versions[0]["principal"]["type"] and versions[0]["created_at"]
    assert versions[0]["config"] == versions[3]["config"]  # field for field, processor ids included
    assert restored["replicas"] == 1 and restored["client_id"] is None
    assert restored["downstream_processors"][0]["id"] == processor_id  # kept: dead letters stay replayable
    assert restored["downstream_processors"][0]["on_error"] == "retry"

    diff = client.get(f"/consumers/{cid}/versions/2/diff/").json  # against version 1
    assert diff["against"] == 1
    assert {(c["field"], c["before"], c["after"]) for c in diff["changes"]} == {
        ("replicas", 1, 3), ("client_id", None, "c2")}
    diff = client.get("/consumers/orders-archive/versions/4/diff/", query_string={"against": 3}).json
    assert {(c["field"], c["change"], c["before"], c["after"]) for c in diff["changes"]} == {
        ("replicas", "changed", 3, 1), ("client_id", "changed", "c2", None),
        (f"downstream_processors[{processor_id}].on_error", "changed", "skip", "retry")}
    assert client.get(f"/consumers/{cid}/versions/1/").json["config"]["name"] == "orders-archive"


def test_rollback_defaults_to_the_previous_version_and_restores_a_deleted_processor_with_its_id(client):
    cid = client.post("/consumers/", json={**VALID_CONSUMER, "downstream_processors": [FILE_SINK]}).json["id"]
    processor_id = client.get(f"/consumers/{cid}/processors/").json[0]["id"]
    assert client.delete(f"/consumers/{cid}/processors/{processor_id}/").status_code == 204
    diff = client.get(f"/consumers/{cid}/versions/2/diff/").json
    assert [(c["field"], c["change"]) for c in diff["changes"]] == [
        (f"downstream_processors[{processor_id}]", "removed")]
    restored = client.post(f"/consumers/{cid}/rollback/", json={}).json
    assert [p["id"] for p in restored["downstream_processors"]] == [processor_id]
    assert restored["generation"] == 1  # stopped: no restart needed
    assert [v["summary"] for v in _versions(client, cid)][:1] == ["rollback to version 1"]


def test_a_same_value_patch_writes_no_version_and_a_missing_version_is_404(client):
    cid = client.post("/consumers/", json=VALID_CONSUMER).json["id"]
    client.patch(f"/consumers/{cid}/", json={"topic": VALID_CONSUMER["topic"]})
    assert [v["version"] for v in _versions(client, cid)] == [1]
    missing = client.get(f"/consumers/{cid}/versions/9/")
    assert missing.status_code == 404 and set(missing.json) == {"code", "status", "message", "errors"}
    assert client.post(f"/consumers/{cid}/rollback/", json={"version": 9}).status_code == 404
    first = client.post(f"/consumers/{cid}/rollback/", json={})
    assert first.status_code == 422 and "no previous version" in first.json["message"]
    assert client.post(f"/consumers/{cid}/rollback/", json={"version": 0}).status_code == 422


def test_rollback_to_a_version_whose_processor_type_is_gone_is_a_422_that_says_so(app, client, pg_engine):
    cid = client.post("/consumers/", json=VALID_CONSUMER).json["id"]
    client.patch(f"/consumers/{cid}/", json={"replicas": 2})
    with pg_engine.begin() as conn:  # version 1 as an installation that had a plugin since removed wrote it
        config = conn.execute(sa.text("SELECT config FROM consumer_versions WHERE number = 1")).scalar()
        config["downstream_processors"] = [{"id": "00000000-0000-4000-8000-000000000001",
                                            "processor_type": "uninstalled_sink", "config": {},
                                            "on_error": "retry", "position": 0}]
        conn.execute(sa.text("UPDATE consumer_versions SET config = CAST(:c AS jsonb) WHERE number = 1"),
                     {"c": json.dumps(config)})
    response = client.post(f"/consumers/{cid}/rollback/", json={"version": 1})
    assert response.status_code == 422
    assert "uninstalled_sink" in response.json["message"] and "not installed" in response.json["message"]
    assert client.get(f"/consumers/{cid}/").json["replicas"] == 2  # nothing changed
    assert [v["version"] for v in _versions(client, cid)] == [2, 1]


def test_history_roles_and_cascade(app, client, pg_engine):
    cid = client.post("/consumers/", json=VALID_CONSUMER).json["id"]
    client.patch(f"/consumers/{cid}/", json={"replicas": 2})
    viewer = client.post("/api-keys/", json={"name": "v", "role": "viewer"}).json["token"]
    operator = client.post("/api-keys/", json={"name": "o", "role": "operator"}).json["token"]
    assert app.test_client(token=viewer).get(f"/consumers/{cid}/versions/").status_code == 200
    assert app.test_client(token=operator).post(f"/consumers/{cid}/rollback/", json={}).status_code == 403
    assert client.delete(f"/consumers/{cid}/").status_code == 204
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM consumer_versions")).scalar() == 0
        actions = {row[0] for row in conn.execute(sa.text(
            "SELECT action FROM audit_events WHERE target_id = :c"), {"c": cid})}
    assert {"consumer.create", "consumer.update", "consumer.delete"} <= actions


def test_versions_on_sqlite_too(sqlite_url, redis_client, redis_test_url):
    app = make_app(sqlite_url, redis_test_url)
    client = app.test_client()
    cid = client.post("/consumers/", json={**VALID_CONSUMER, "downstream_processors": [FILE_SINK]}).json["id"]
    client.patch(f"/consumers/{cid}/", json={"topic": "other"})
    restored = client.post(f"/consumers/{cid}/rollback/", json={"version": 1}).json
    assert restored["topic"] == VALID_CONSUMER["topic"]
    versions = _versions(client, cid)
    assert versions[0]["config"] == versions[2]["config"]
    from api.context import EXTENSION

    app.extensions[EXTENSION].close()
