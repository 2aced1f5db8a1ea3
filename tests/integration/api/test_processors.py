"""/consumers/{id}/processors/ CRUD and /processor-types/."""
from __future__ import annotations

import uuid

import pytest

COLLECTOR = {"processor_type": "test_collector", "config": {"path": "/tmp/kcm-a"}}


@pytest.mark.parametrize("suffix", ["/", ""])
def test_create_list_get_patch_delete_a_processor(client, create_consumer, suffix):
    consumer = create_consumer()
    base = f"/consumers/{consumer['id']}/processors"
    created = client.post(f"{base}{suffix}", json=COLLECTOR)
    assert created.status_code == 201, created.json
    processor = created.json
    assert created.headers["Location"].endswith(f"{base}/{processor['id']}/")
    assert processor["consumer_id"] == consumer["id"] and processor["position"] == 0
    assert processor["on_error"] == "retry" and processor["config"] == COLLECTOR["config"]

    second = client.post(f"{base}{suffix}", json={**COLLECTOR, "on_error": "dead_letter"}).json
    assert second["position"] == 1 and second["on_error"] == "dead_letter"

    listed = client.get(f"{base}{suffix}")
    assert listed.status_code == 200 and [p["id"] for p in listed.json] == [processor["id"], second["id"]]

    item = f"{base}/{processor['id']}{suffix}"
    assert client.get(item).json == processor
    patched = client.patch(item, json={"config": {"path": "/tmp/kcm-b", "delay_ms": 5}, "position": 9})
    assert patched.status_code == 200, patched.json
    assert patched.json["config"] == {"path": "/tmp/kcm-b", "delay_ms": 5} and patched.json["position"] == 9
    assert [p["id"] for p in client.get(f"{base}/").json] == [second["id"], processor["id"]]

    assert client.delete(item).status_code == 204
    assert client.get(item).status_code == 404
    assert client.delete(item).status_code == 404
    assert [p["id"] for p in client.get(f"/consumers/{consumer['id']}/").json["downstream_processors"]] == [
        second["id"]]


def test_processor_changes_on_a_running_consumer_bump_its_generation(client, create_consumer):
    consumer = create_consumer()
    cid = consumer["id"]
    generation = client.post(f"/consumers/{cid}/start/").json["generation"]
    processor = client.post(f"/consumers/{cid}/processors/", json=COLLECTOR).json
    assert client.get(f"/consumers/{cid}/").json["generation"] == generation + 1
    client.patch(f"/consumers/{cid}/processors/{processor['id']}/", json={"on_error": "skip"})
    assert client.get(f"/consumers/{cid}/").json["generation"] == generation + 2
    client.delete(f"/consumers/{cid}/processors/{processor['id']}/")
    assert client.get(f"/consumers/{cid}/").json["generation"] == generation + 3


def test_processor_changes_on_a_stopped_consumer_keep_its_generation(client, create_consumer):
    consumer = create_consumer()
    client.post(f"/consumers/{consumer['id']}/processors/", json=COLLECTOR)
    assert client.get(f"/consumers/{consumer['id']}/").json["generation"] == 1


def test_unknown_processor_type_is_422_listing_the_installed_types(client, create_consumer):
    consumer = create_consumer()
    response = client.post(f"/consumers/{consumer['id']}/processors/",
                           json={"processor_type": "no_such_sink", "config": {}})
    assert response.status_code == 422
    (message,) = response.json["errors"]["json"]["processor_type"]
    assert "test_collector" in message


def test_patch_config_is_validated_against_the_processor_type(client, create_consumer):
    consumer = create_consumer(downstream_processors=[COLLECTOR])
    pid = consumer["downstream_processors"][0]["id"]
    item = f"/consumers/{consumer['id']}/processors/{pid}/"
    bad = client.patch(item, json={"config": {"delay_ms": "x"}})
    assert bad.status_code == 422
    assert set(bad.json["errors"]["json"]["config"]) == {"path", "delay_ms"}
    unknown = client.patch(item, json={"processor_type": "nope"})
    assert unknown.status_code == 422 and "processor_type" in unknown.json["errors"]["json"]
    for field in ("id", "consumer_id", "created_at"):
        response = client.patch(item, json={field: str(uuid.uuid4())})
        assert response.status_code == 422 and field in response.json["errors"]["json"]
    assert client.patch(item, json={"on_error": "retry_forever"}).status_code == 422
    assert client.get(item).json["config"] == COLLECTOR["config"]


def test_processors_of_a_missing_consumer_are_404(client, create_consumer):
    missing = uuid.uuid4()
    assert client.get(f"/consumers/{missing}/processors/").status_code == 404
    assert client.post(f"/consumers/{missing}/processors", json=COLLECTOR).status_code == 404
    other = create_consumer(downstream_processors=[COLLECTOR])
    pid = other["downstream_processors"][0]["id"]
    consumer = create_consumer()
    # a processor id of another consumer is not reachable under this one
    assert client.get(f"/consumers/{consumer['id']}/processors/{pid}/").status_code == 404
    assert client.get(f"/consumers/{consumer['id']}/processors/not-a-uuid/").status_code == 404


@pytest.mark.parametrize("path", ["/processor-types/", "/processor-types"])
def test_processor_types_list_installed_types_with_json_schema(client, path):
    from processors import registry

    response = client.get(path)
    assert response.status_code == 200
    by_name = {t["name"]: t for t in response.json}
    assert set(by_name) == set(registry.installed_names())
    collector = by_name["test_collector"]
    assert "topic partition offset value" in collector["description"]
    schema = collector["config_schema"]
    assert schema["type"] == "object" and schema["required"] == ["path"]
    assert schema["properties"]["path"] == {"type": "string", "description": "file the collected lines go to"}
    assert schema["properties"]["delay_ms"] == {"type": "integer", "default": 0}
    assert schema["properties"]["fail_on"]["type"] == ["string", "null"]


def test_processor_type_config_schemas_are_valid_json_schemas_that_agree_with_marshmallow(client):
    import jsonschema_rs  # installed with schemathesis (test extra)

    types = {t["name"]: t for t in client.get("/processor-types/").json}
    for name, described in types.items():
        assert described["error"] is None, described["error"]
        assert jsonschema_rs.meta.is_valid(described["config_schema"]), name
    collector = jsonschema_rs.validator_for(types["test_collector"]["config_schema"])
    assert collector.is_valid({"path": "/tmp/x", "delay_ms": 5})
    assert not collector.is_valid({})  # path is required
    assert not collector.is_valid({"path": "/tmp/x", "delay_ms": "slow"})
    assert not collector.is_valid({"path": "/tmp/x", "unknown": 1})
