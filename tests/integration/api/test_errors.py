"""Validation (422 per field) and the uniform error body for 400, 404, 405, 413, 415, 422 and 500."""
from __future__ import annotations

import json
import logging
import uuid

import pytest

from tests.integration.api.conftest import VALID_CONSUMER, make_app

ERROR_KEYS = {"code", "status", "message", "errors"}


def field_errors(response) -> dict:
    assert response.status_code == 422, response.json
    assert set(response.json) == ERROR_KEYS
    return response.json["errors"]["json"]


@pytest.mark.parametrize("missing", ["topic", "consumer_group", "broker_ip", "broker_port"])
def test_missing_required_field_is_422_naming_it(client, missing):
    body = {k: v for k, v in VALID_CONSUMER.items() if k != missing}
    assert missing in field_errors(client.post("/consumers/", json=body))


def test_neither_broker_form_is_422(client):
    body = {"topic": "t", "consumer_group": "g"}
    errors = field_errors(client.post("/consumers/", json=body))
    assert "broker_ip" in errors and "broker_port" in errors


def test_a_missing_broker_form_is_reported_with_the_other_field_errors(client):
    errors = field_errors(client.post("/consumers/", json={"topic": "t"}))
    assert {"consumer_group", "broker_ip", "broker_port"} <= set(errors)


def test_a_non_security_setting_in_security_is_422(client):
    body = {**VALID_CONSUMER, "security": {"enable.auto.commit": True, "security.protocol": "SSL"}}
    assert set(field_errors(client.post("/consumers/", json=body))["security"]) == {"enable.auto.commit"}


def test_both_broker_forms_is_422(client):
    errors = field_errors(client.post("/consumers/", json={**VALID_CONSUMER, "bootstrap_servers": ["k:9092"]}))
    assert "bootstrap_servers" in errors


@pytest.mark.parametrize("field,value", [
    ("broker_port", 0), ("broker_port", 65536), ("broker_port", "9092"), ("broker_port", -1),
    ("broker_ip", "not a host"), ("broker_ip", "999.1.1.1"), ("broker_ip", "-bad-.example"), ("broker_ip", ""),
    ("topic", ""), ("topic", "."), ("topic", ".."), ("topic", "has space"), ("topic", "a" * 250),
    ("topic", "sl/ash"), ("consumer_group", ""), ("consumer_group", "   "), ("replicas", 0), ("replicas", 65),
    ("auto_offset_reset", "smallest"), ("bootstrap_servers", []), ("bootstrap_servers", ["no-port"]),
    ("bootstrap_servers", ["host:99999"]), ("client_id", "x" * 256), ("unknown_field", 1),
])
def test_invalid_field_is_422_with_a_message_for_that_field(client, field, value):
    assert field in field_errors(client.post("/consumers/", json={**VALID_CONSUMER, field: value}))


@pytest.mark.parametrize("topic", ["a", "A.b-c_d", "x" * 249, "..."])
def test_valid_kafka_topic_names_are_accepted(client, topic):
    assert client.post("/consumers/", json={**VALID_CONSUMER, "topic": topic}).status_code == 201


@pytest.mark.parametrize("setting", ["sasl.password", "ssl.key.pem", "sasl.oauthbearer.client.secret",
                                     "ssl.keystore.password"])
def test_a_secret_given_in_clear_is_422_and_not_echoed(client, setting):
    response = client.post("/consumers/", json={**VALID_CONSUMER, "security": {setting: "hunter2-secret"}})
    assert setting in field_errors(response)["security"]
    assert "hunter2-secret" not in response.get_data(as_text=True)


def test_unknown_processor_type_is_422_listing_installed_types(client):
    body = {**VALID_CONSUMER, "downstream_processors": [{"processor_type": "test_colector", "config": {}}]}
    errors = field_errors(client.post("/consumers/", json=body))
    (message,) = errors["downstream_processors"]["0"]["processor_type"]
    assert "test_collector" in message and "Installed" in message and "Did you mean" in message


def test_processor_config_is_validated_by_its_own_schema_under_the_processor_index(client):
    body = {**VALID_CONSUMER, "downstream_processors": [
        {"processor_type": "test_collector", "config": {"path": "/tmp/ok"}},
        {"processor_type": "test_collector", "config": {"delay_ms": "slow"}},
    ]}
    errors = field_errors(client.post("/consumers/", json=body))["downstream_processors"]
    assert set(errors) == {"1"}
    assert set(errors["1"]["config"]) == {"path", "delay_ms"}


def test_bad_on_error_is_422(client):
    body = {**VALID_CONSUMER, "downstream_processors": [
        {"processor_type": "test_collector", "config": {"path": "/x"}, "on_error": "ignore"}]}
    assert "on_error" in field_errors(client.post("/consumers/", json=body))["downstream_processors"]["0"]


@pytest.mark.parametrize("path", ["/consumers/", "/consumers"])
def test_malformed_json_is_400(client, path):
    response = client.post(path, data='{"topic": ', content_type="application/json")
    assert response.status_code == 400
    assert set(response.json) == ERROR_KEYS


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_non_json_body_is_415(client, content_type):
    response = client.post("/consumers/", data="topic=orders", content_type=content_type)
    assert response.status_code == 415
    assert set(response.json) == ERROR_KEYS


def test_non_json_body_on_patch_is_415(client, create_consumer):
    consumer = create_consumer()
    response = client.patch(f"/consumers/{consumer['id']}/", data="x", content_type="text/plain")
    assert response.status_code == 415


@pytest.mark.parametrize("method,path", [("put", "/consumers/"), ("delete", "/consumers"),
                                         ("get", "/consumers/{id}/start/"), ("put", "/processor-types/"),
                                         ("post", "/consumers/{id}/status/")])
def test_wrong_method_is_405(client, method, path):
    response = getattr(client, method)(path.replace("{id}", str(uuid.uuid4())))
    assert response.status_code == 405
    assert set(response.json) == ERROR_KEYS


@pytest.mark.parametrize("path,allowed", [
    ("/consumers", {"GET", "POST"}), ("/consumers/", {"GET", "POST"}), ("/processor-types", {"GET"}),
    ("/consumers/{id}/start", {"POST"}), ("/consumers/{id}/start/", {"POST"}),
])
def test_options_and_head_work_on_both_path_forms(client, path, allowed):
    path = path.replace("{id}", str(uuid.uuid4()))
    options = client.options(path)
    assert options.status_code == 200
    assert allowed <= {m.strip() for m in options.headers["Allow"].split(",")}
    if "GET" in allowed:
        assert client.head(path).status_code == 200


def test_unknown_path_is_404_with_the_error_body(client):
    response = client.get("/nothing-here/")
    assert response.status_code == 404 and set(response.json) == ERROR_KEYS


def test_body_over_the_configured_size_is_413(pg_clean, pg_url, redis_test_url):
    app = make_app(pg_url, redis_test_url, max_content_length=1024)
    body = {**VALID_CONSUMER, "client_id": "x" * 2000}
    response = app.test_client().post("/consumers/", json=body)
    assert response.status_code == 413
    assert set(response.json) == ERROR_KEYS
    assert app.test_client().post("/consumers/", json=VALID_CONSUMER).status_code == 201


@pytest.mark.parametrize("body", [
    {**VALID_CONSUMER, "consumer_group": "nul\u0000byte"},
    {**VALID_CONSUMER, "downstream_processors": [{"processor_type": "test_collector",
                                                  "config": {"path": "/tmp/\u0000"}}]},
])
def test_nul_characters_are_422_not_a_database_error(client, body):
    response = client.post("/consumers/", json=body)
    assert response.status_code == 422
    assert client.get("/consumers/?topic=a%00b").status_code == 422


def test_deeply_nested_json_is_a_client_error_not_a_500(client):
    too_deep_to_parse = "[" * 5_000 + "]" * 5_000
    response = client.post("/consumers/", data=too_deep_to_parse, content_type="application/json")
    assert response.status_code == 400
    nested = {**VALID_CONSUMER, "security": {"ssl.x": "y"}}
    config = current = {}
    for _ in range(500):
        current["a"] = {}
        current = current["a"]
    nested["downstream_processors"] = [{"processor_type": "test_collector", "config": config}]
    assert client.post("/consumers/", json=nested).status_code == 422


def test_nan_in_a_json_body_is_422(client):
    raw = json.dumps({**VALID_CONSUMER, "security": {"socket.timeout.ms": float("nan")}})
    response = client.post("/consumers/", data=raw, content_type="application/json")
    assert response.status_code == 422


def test_item_errors_mixed_with_a_list_error_are_422_not_500(client):
    # marshmallow keys item errors by int and the list's own error by '_schema': JSON needs string keys
    body = {**VALID_CONSUMER, "bootstrap_servers": ["k:1", "no-port"]}
    errors = field_errors(client.post("/consumers/", json=body))["bootstrap_servers"]
    assert "1" in errors and "_schema" in errors


def test_non_object_json_body_is_422(client):
    for raw in ("[]", '"text"', "42", "null"):
        response = client.post("/consumers/", data=raw, content_type="application/json")
        assert response.status_code == 422, raw


def test_an_unexpected_error_is_500_with_the_uniform_body_and_no_traceback(app, monkeypatch, caplog):
    from api.context import EXTENSION

    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(app.extensions[EXTENSION].consumers, "page", explode)
    with caplog.at_level(logging.ERROR, logger="kcm.api"):
        response = app.test_client().get("/consumers/")
    assert response.status_code == 500
    assert set(response.json) == ERROR_KEYS
    text = response.get_data(as_text=True)
    assert "secret internal detail" not in text and "Traceback" not in text
    assert "secret internal detail" in caplog.text  # the details go to the log


def test_tables_missing_gives_a_clear_error(tmp_path, redis_test_url):
    from api.context import SchemaNotMigrated

    with pytest.raises(SchemaNotMigrated, match="schema.migrate"):
        make_app(f"sqlite:///{tmp_path / 'empty.sqlite3'}", redis_test_url)
