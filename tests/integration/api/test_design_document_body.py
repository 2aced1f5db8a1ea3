"""The design document's ``POST /consumers/`` body (section 7.1) works verbatim, on PostgreSQL and SQLite, and
processor configs are stored in their one canonical form."""
from __future__ import annotations

import pytest

from api.context import EXTENSION
from tests.integration.api.conftest import VALID_CONSUMER, make_app

DESIGN_DOCUMENT_BODY = {
    "broker_ip": "127.0.0.1", "broker_port": 19092, "topic": "orders", "consumer_group": "g1", "client_id": "c1",
    "downstream_processors": [
        {"processor_type": "file_sink", "config": {"file_path": "orders.log"}},
        {"processor_type": "database_sync", "config": {}}],
}


@pytest.fixture
def sink_root(tmp_path):
    root = tmp_path / "api-sink"
    root.mkdir()
    return root


@pytest.fixture
def api(database_url, redis_client, redis_test_url, sink_root):
    """The app on each database, with a file sink root of its own (not the environment's)."""
    app = make_app(database_url, redis_test_url, file_sink_root=str(sink_root))
    yield app.test_client()
    app.extensions[EXTENSION].close()


def _errors(response) -> dict:
    assert response.status_code == 422, response.json
    assert set(response.json) == {"code", "status", "message", "errors"}
    return response.json["errors"]["json"]


def _configs(api, consumer_id: str) -> list[tuple[str, dict]]:
    body = api.get(f"/consumers/{consumer_id}/").json
    return [(p["processor_type"], p["config"]) for p in body["downstream_processors"]]


def test_the_design_document_body_is_201_and_stored_as_given(api):
    response = api.post("/consumers/", json=DESIGN_DOCUMENT_BODY)
    assert response.status_code == 201, response.json
    assert response.json["client_id"] == "c1" and response.json["topic"] == "orders"
    assert _configs(api, response.json["id"]) == [("file_sink", {"file_path": "orders.log"}),
                                                  ("database_sync", {})]


def test_the_path_alias_is_stored_as_file_path_on_create_add_and_patch(api):
    body = {**VALID_CONSUMER, "downstream_processors": [
        {"processor_type": "file_sink", "config": {"path": "a.log", "format": "json"}}]}
    created = api.post("/consumers/", json=body)
    assert created.status_code == 201, created.json
    cid = created.json["id"]
    assert _configs(api, cid) == [("file_sink", {"file_path": "a.log", "format": "json"})]

    added = api.post(f"/consumers/{cid}/processors/", json={"processor_type": "file_sink", "config": {"path": "b.log"}})
    assert added.status_code == 201 and added.json["config"] == {"file_path": "b.log"}
    patched = api.patch(f"/consumers/{cid}/processors/{added.json['id']}/", json={"config": {"path": "c.log"}})
    assert patched.status_code == 200 and patched.json["config"] == {"file_path": "c.log"}

    replaced = api.patch(f"/consumers/{cid}/", json={"downstream_processors": [
        {"processor_type": "file_sink", "config": {"path": "d.log"}}]})
    assert replaced.status_code == 200, replaced.json
    assert _configs(api, cid) == [("file_sink", {"file_path": "d.log"})]


def test_file_path_and_its_alias_together_are_422(api):
    body = {**VALID_CONSUMER, "downstream_processors": [
        {"processor_type": "file_sink", "config": {"path": "a.log", "file_path": "b.log"}}]}
    errors = _errors(api.post("/consumers/", json=body))
    assert errors == {"downstream_processors": {"0": {"config": {"path": [
        "Give file_path or its alias path, not both."]}}}}


def test_a_path_outside_the_apps_file_sink_root_is_422_naming_the_root(api, sink_root):
    for config in ({"file_path": "/etc/passwd"}, {"path": "../escape.log"}):
        body = {**VALID_CONSUMER, "downstream_processors": [{"processor_type": "file_sink", "config": config}]}
        messages = _errors(api.post("/consumers/", json=body))["downstream_processors"]["0"]["config"]["file_path"]
        assert any(str(sink_root) in m or "'..'" in m for m in messages), messages
    created = api.post("/consumers/", json=VALID_CONSUMER).json
    outside = api.post(f"/consumers/{created['id']}/processors/",
                       json={"processor_type": "file_sink", "config": {"file_path": "/tmp/elsewhere.log"}})
    assert _errors(outside) == {"config": {"file_path": [f"path must be inside the file sink root {sink_root}"]}}


@pytest.mark.parametrize("table", ["consumers", "public.consumers", "downstream_processors", "alembic_version",
                                   "kcm_offsets", "other.kcm_offsets", "kcm_changes"])
def test_kcms_own_tables_are_422_as_a_database_sync_target(api, table):
    body = {**VALID_CONSUMER, "downstream_processors": [{"processor_type": "database_sync",
                                                          "config": {"table": table}}]}
    messages = _errors(api.post("/consumers/", json=body))["downstream_processors"]["0"]["config"]["table"]
    assert any(m.startswith("kcm's own tables cannot be a sink target") for m in messages)


def test_a_processor_patch_to_a_protected_table_is_422_and_changes_nothing(api):
    created = api.post("/consumers/", json=DESIGN_DOCUMENT_BODY).json
    sync = created["downstream_processors"][1]
    patched = api.patch(f"/consumers/{created['id']}/processors/{sync['id']}/", json={"config": {"table": "consumers"}})
    assert "table" in _errors(patched)["config"]
    assert _configs(api, created["id"])[1] == ("database_sync", {})


def test_kafka_forward_topic_with_a_newline_is_422_and_both_bootstrap_forms_are_accepted(api):
    forward = {"processor_type": "kafka_forward", "config": {"topic": "orders\n"}}
    errors = _errors(api.post("/consumers/", json={**VALID_CONSUMER, "downstream_processors": [forward]}))
    assert "topic" in errors["downstream_processors"]["0"]["config"]
    body = {"bootstrap_servers": "k1:9092,k2:9092", "topic": "t", "consumer_group": "g", "downstream_processors": [
        {"processor_type": "kafka_forward", "config": {"topic": "copy", "bootstrap_servers": "t1:9092,t2:9092"}},
        {"processor_type": "kafka_forward", "config": {"topic": "copy2", "bootstrap_servers": ["t3:9092"]}}]}
    created = api.post("/consumers/", json=body)
    assert created.status_code == 201, created.json
    assert created.json["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert [c["bootstrap_servers"] for _t, c in _configs(api, created.json["id"])] == [["t1:9092", "t2:9092"],
                                                                                       ["t3:9092"]]
    garbage = {"processor_type": "kafka_forward", "config": {"topic": "c", "bootstrap_servers": "t1:9092,nope"}}
    errors = _errors(api.post("/consumers/", json={**VALID_CONSUMER, "downstream_processors": [garbage]}))
    assert errors["downstream_processors"]["0"]["config"] == {"bootstrap_servers": {
        "1": ["Expected 'host:port' with a valid hostname or IP and a port in 1-65535."]}}
