"""Consumer CRUD: /consumers/ and /consumers/{id}/, both path forms, pagination and filters."""
from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from tests.integration.api.conftest import VALID_CONSUMER


def test_create_returns_201_with_every_field_and_a_location(client):
    body = {**VALID_CONSUMER, "client_id": "kcm-1",
            "downstream_processors": [{"processor_type": "test_collector", "config": {"path": "/tmp/a"}}]}
    response = client.post("/consumers/", json=body)
    assert response.status_code == 201
    consumer = response.json
    uuid.UUID(consumer["id"])
    assert response.headers["Location"].endswith(f"/consumers/{consumer['id']}/")
    assert consumer["status"] == "INACTIVE"
    assert consumer["desired_state"] == "stopped"
    assert consumer["generation"] == 1
    assert consumer["replicas"] == 1
    assert consumer["auto_offset_reset"] == "earliest"
    assert consumer["created_at"] and consumer["updated_at"]
    for name, value in body.items():
        if name != "downstream_processors":
            assert consumer[name] == value
    (processor,) = consumer["downstream_processors"]
    uuid.UUID(processor["id"])
    assert processor["processor_type"] == "test_collector"
    assert processor["config"] == {"path": "/tmp/a"}
    assert processor["on_error"] == "retry"
    assert client.get(response.headers["Location"]).json == consumer


def test_create_without_trailing_slash_does_not_redirect(client):
    response = client.post("/consumers", json=VALID_CONSUMER)
    assert response.status_code == 201


def test_create_with_bootstrap_servers_instead_of_broker_ip(client):
    body = {"bootstrap_servers": ["kafka-1:9092", "10.0.0.2:9093", "[::1]:9094"], "topic": "t",
            "consumer_group": "g", "replicas": 3, "auto_offset_reset": "latest"}
    response = client.post("/consumers/", json=body)
    assert response.status_code == 201, response.json
    assert response.json["bootstrap_servers"] == body["bootstrap_servers"]
    assert response.json["broker_ip"] is None and response.json["broker_port"] is None
    assert response.json["replicas"] == 3


def test_security_references_are_stored_and_returned_as_references(client):
    security = {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "svc",
                "sasl.password": "${env:KCM_SECRET_KAFKA_PASSWORD}", "ssl.key.pem": "${file:/run/secrets/kafka-key.pem}"}
    response = client.post("/consumers/", json={**VALID_CONSUMER, "security": security})
    assert response.status_code == 201, response.json
    assert response.json["security"] == security


@pytest.mark.parametrize("suffix", ["/", ""])
def test_get_one_in_both_path_forms(client, create_consumer, suffix):
    consumer = create_consumer()
    response = client.get(f"/consumers/{consumer['id']}{suffix}")
    assert response.status_code == 200
    assert response.json == consumer


@pytest.mark.parametrize("suffix", ["/", ""])
def test_get_missing_consumer_is_404_with_the_error_body(client, suffix):
    response = client.get(f"/consumers/{uuid.uuid4()}{suffix}")
    assert response.status_code == 404
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert response.json["code"] == 404 and "not found" in response.json["message"]


@pytest.mark.parametrize("path", ["/consumers/not-a-uuid/", "/consumers/123", "/consumers/not-a-uuid/start/",
                                  "/consumers/x/processors/", "/consumers/x/status"])
def test_malformed_uuid_in_path_is_404(client, path):
    response = client.get(path) if "start" not in path else client.post(path)
    assert response.status_code == 404
    assert response.json["code"] == 404


def test_list_is_paginated_with_an_x_pagination_header(client, create_consumer):
    created = [create_consumer(topic=f"topic-{i}")["id"] for i in range(5)]
    first = client.get("/consumers/?page=1&page_size=2")
    assert first.status_code == 200
    assert [c["id"] for c in first.json] == created[:2]
    pagination = json.loads(first.headers["X-Pagination"])
    assert pagination["total"] == 5 and pagination["total_pages"] == 3 and pagination["next_page"] == 2
    last = client.get("/consumers?page=3&page_size=2")
    assert [c["id"] for c in last.json] == created[4:]
    beyond = client.get("/consumers/?page=99999999999999999999&page_size=2")
    assert beyond.status_code == 200 and beyond.json == []


def test_list_rejects_bad_pagination_and_filters(client):
    assert client.get("/consumers/?page=0").status_code == 422
    assert client.get("/consumers/?page_size=100000").status_code == 422
    response = client.get("/consumers/?status=SLEEPING")
    assert response.status_code == 422 and "status" in response.json["errors"]["query"]


def test_list_filters_by_status_topic_and_group(client, create_consumer, pg_engine):
    a = create_consumer(topic="alpha", consumer_group="g1")
    b = create_consumer(topic="beta", consumer_group="g1")
    c = create_consumer(topic="alpha", consumer_group="g2")
    with pg_engine.begin() as conn:  # the supervisor writes status back; do what it would
        conn.execute(sa.text("UPDATE consumers SET status='ACTIVE' WHERE id=:id"), {"id": b["id"]})

    def ids(query):
        response = client.get(f"/consumers/?{query}")
        assert response.status_code == 200
        return {c["id"] for c in response.json}

    assert ids("topic=alpha") == {a["id"], c["id"]}
    assert ids("consumer_group=g1") == {a["id"], b["id"]}
    assert ids("topic=alpha&consumer_group=g2") == {c["id"]}
    assert ids("status=ACTIVE") == {b["id"]}
    assert ids("status=INACTIVE") == {a["id"], c["id"]}
    assert ids("status=ERROR") == set()


@pytest.mark.parametrize("suffix", ["/", ""])
def test_patch_changes_user_fields_without_a_new_generation_when_stopped(client, create_consumer, suffix):
    consumer = create_consumer()
    response = client.patch(f"/consumers/{consumer['id']}{suffix}", json={"topic": "renamed", "replicas": 4})
    assert response.status_code == 200, response.json
    assert response.json["topic"] == "renamed" and response.json["replicas"] == 4
    assert response.json["generation"] == 1
    assert response.json["updated_at"] >= consumer["updated_at"]


def test_patch_of_a_running_consumer_bumps_the_generation(client, create_consumer):
    consumer = create_consumer()
    started = client.post(f"/consumers/{consumer['id']}/start/").json
    response = client.patch(f"/consumers/{consumer['id']}/", json={"consumer_group": "other"})
    assert response.status_code == 200
    assert response.json["generation"] == started["generation"] + 1
    same = client.patch(f"/consumers/{consumer['id']}/", json={"consumer_group": "other"})
    assert same.json["generation"] == response.json["generation"]  # nothing changed, nothing restarts


@pytest.mark.parametrize("field,value", [
    ("id", str(uuid.uuid4())), ("status", "ACTIVE"), ("desired_state", "running"), ("generation", 7),
    ("created_at", "2020-01-01T00:00:00Z"), ("updated_at", "2020-01-01T00:00:00Z"),
])
def test_patch_of_a_read_only_field_is_422(client, create_consumer, field, value):
    consumer = create_consumer()
    response = client.patch(f"/consumers/{consumer['id']}/", json={field: value})
    assert response.status_code == 422
    assert field in response.json["errors"]["json"]
    assert client.get(f"/consumers/{consumer['id']}/").json == consumer


def test_patch_switches_between_broker_forms(client, create_consumer):
    consumer = create_consumer()
    switched = client.patch(f"/consumers/{consumer['id']}/", json={"bootstrap_servers": ["k1:9092", "k2:9092"]})
    assert switched.status_code == 200, switched.json
    assert switched.json["broker_ip"] is None and switched.json["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    back = client.patch(f"/consumers/{consumer['id']}/", json={"broker_ip": "kafka", "broker_port": 9092})
    assert back.status_code == 200 and back.json["bootstrap_servers"] is None
    half = client.patch(f"/consumers/{consumer['id']}/", json={"broker_port": None})
    assert half.status_code == 422 and "broker_port" in half.json["errors"]["json"]
    both = client.patch(f"/consumers/{consumer['id']}/", json={"broker_ip": "k", "bootstrap_servers": ["k:1"]})
    assert both.status_code == 422


def test_patch_replaces_the_processor_list(client, create_consumer):
    consumer = create_consumer(downstream_processors=[
        {"processor_type": "test_collector", "config": {"path": "/tmp/1"}}])
    response = client.patch(f"/consumers/{consumer['id']}/", json={"downstream_processors": [
        {"processor_type": "test_collector", "config": {"path": "/tmp/2"}},
        {"processor_type": "test_collector", "config": {"path": "/tmp/3"}, "on_error": "skip"}]})
    assert response.status_code == 200, response.json
    assert [p["config"]["path"] for p in response.json["downstream_processors"]] == ["/tmp/2", "/tmp/3"]
    assert [p["position"] for p in response.json["downstream_processors"]] == [0, 1]


def test_patch_missing_consumer_is_404(client):
    assert client.patch(f"/consumers/{uuid.uuid4()}/", json={"topic": "x"}).status_code == 404


@pytest.mark.parametrize("suffix", ["/", ""])
def test_delete_is_204_then_404_and_cascades_to_processors(client, create_consumer, pg_engine, suffix):
    consumer = create_consumer(downstream_processors=[
        {"processor_type": "test_collector", "config": {"path": "/tmp/1"}}])
    response = client.delete(f"/consumers/{consumer['id']}{suffix}")
    assert response.status_code == 204 and response.data == b""
    assert client.get(f"/consumers/{consumer['id']}/").status_code == 404
    assert client.delete(f"/consumers/{consumer['id']}{suffix}").status_code == 404
    with pg_engine.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM downstream_processors")).scalar()
    assert left == 0
