"""Issue 10's attacks at the API: what a stored config could use to read files, environment variables,
run commands, load libraries or reach internal addresses is a 422 naming the field and the rule."""
from __future__ import annotations

import pytest

from api.context import EXTENSION
from tests.integration.api.conftest import VALID_CONSUMER, make_app

PASSWD_LINES = [line for line in open("/etc/passwd").read().splitlines() if line.strip()]


def field_errors(response) -> dict:
    assert response.status_code == 422, response.json
    body = response.json
    assert set(body) == {"code", "status", "message", "errors"} and body["code"] == 422
    return body["errors"]["json"]


def sync_processor(**config) -> dict:
    return {"processor_type": "database_sync", "config": config}


def test_a_dsn_reference_to_etc_passwd_is_422_naming_the_secrets_directory(client):
    response = client.post("/consumers/", json={**VALID_CONSUMER, "downstream_processors": [
        sync_processor(dsn="${file:/etc/passwd}")]})
    errors = field_errors(response)
    message = " ".join(errors["downstream_processors"]["0"]["config"]["dsn"])
    assert "/run/secrets" in message and "KCM_SECRETS_DIR" in message
    assert not any(line in response.get_data(as_text=True) for line in PASSWD_LINES)


@pytest.mark.parametrize("reference,rule", [
    ("${env:KCM_DATABASE_URL}", "KCM_SECRET_ENV_PREFIX"), ("${env:HOME}", "KCM_SECRET_"),
    ("${file:/run/secrets/../../etc/shadow}", "KCM_SECRETS_DIR"), ("postgresql://u:pw@h/db", "reference"),
])
def test_a_reference_outside_the_prefix_or_directory_is_422(client, reference, rule):
    errors = field_errors(client.post("/consumers/", json={**VALID_CONSUMER, "downstream_processors": [
        sync_processor(dsn=reference)]}))
    assert rule in " ".join(errors["downstream_processors"]["0"]["config"]["dsn"])


def test_sasl_kerberos_kinit_cmd_is_422_naming_the_key(client):
    errors = field_errors(client.post("/consumers/", json={**VALID_CONSUMER, "security": {
        "sasl.kerberos.kinit.cmd": "touch /tmp/x", "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "GSSAPI"}}))
    assert set(errors["security"]) == {"sasl.kerberos.kinit.cmd", "sasl.mechanism"}
    assert "sasl.kerberos.kinit.cmd" in errors["security"]["sasl.kerberos.kinit.cmd"][0]


@pytest.mark.parametrize("key", ["ssl.engine.location", "plugin.library.paths", "enable.auto.commit",
                                 "sasl.oauthbearer.token.endpoint.url"])
def test_library_loading_keys_and_unlisted_keys_are_422_in_consumers_and_forwarders(client, key):
    value = "http://169.254.169.254/latest" if key.endswith(".url") else "/tmp/evil.so"
    errors = field_errors(client.post("/consumers/", json={**VALID_CONSUMER, "security": {key: value}}))
    assert key in errors["security"]
    errors = field_errors(client.post("/consumers/", json={**VALID_CONSUMER, "downstream_processors": [
        {"processor_type": "kafka_forward", "config": {"topic": "t", "security": {key: value}}}]}))
    assert key in errors["downstream_processors"]["0"]["config"]["security"]


def test_secret_settings_take_only_allowed_references(client):
    errors = field_errors(client.post("/consumers/", json={**VALID_CONSUMER, "security": {
        "sasl.password": "${env:PATH}", "ssl.key.pem": "-----BEGIN PRIVATE KEY-----",
        "ssl.ca.location": "/etc/passwd"}}))
    assert "KCM_SECRET_" in errors["security"]["sasl.password"][0]
    assert "BEGIN" not in str(errors) and "/run/secrets" in errors["security"]["ssl.ca.location"][0]


@pytest.mark.parametrize("body,field", [
    ({"broker_ip": "169.254.169.254"}, "broker_ip"),
    ({"bootstrap_servers": ["kafka:9092", "[fd00:ec2::254]:80"]}, "bootstrap_servers"),
    ({"broker_ip": "metadata.google.internal"}, "broker_ip"),
])
def test_metadata_and_link_local_brokers_are_422_without_an_allowlist(client, body, field):
    base = {k: v for k, v in VALID_CONSUMER.items() if "bootstrap_servers" not in body or not k.startswith("broker_")}
    errors = field_errors(client.post("/consumers/", json={**base, **body}))
    assert set(errors) == {field}
    assert "metadata" in str(errors[field]) or "link-local" in str(errors[field])


@pytest.fixture
def allowlisted_client(pg_clean, redis_client, redis_test_url, pg_url):
    app = make_app(pg_url, redis_test_url, allowed_brokers="127.0.0.1, *.kafka.internal")
    yield app.test_client()
    app.extensions[EXTENSION].close()


def test_with_an_allowlist_other_brokers_are_422_for_consumers_patches_and_forwarders(allowlisted_client):
    client = allowlisted_client
    errors = field_errors(client.post("/consumers/", json={**VALID_CONSUMER, "broker_ip": "10.0.0.7"}))
    assert "KCM_ALLOWED_BROKERS" in errors["broker_ip"][0]
    listed = {k: v for k, v in VALID_CONSUMER.items() if not k.startswith("broker_")}
    created = client.post("/consumers/", json={**listed, "bootstrap_servers": "b1.kafka.internal:9092,127.0.0.1:19092"})
    assert created.status_code == 201, created.json
    patched = client.patch(f"/consumers/{created.json['id']}/", json={"bootstrap_servers": ["evil.example:9092"]})
    assert "KCM_ALLOWED_BROKERS" in str(field_errors(patched)["bootstrap_servers"])
    errors = field_errors(client.post(f"/consumers/{created.json['id']}/processors/", json={
        "processor_type": "kafka_forward", "config": {"bootstrap_servers": ["evil.example:9092"], "topic": "t"}}))
    assert "KCM_ALLOWED_BROKERS" in str(errors["config"]["bootstrap_servers"])
