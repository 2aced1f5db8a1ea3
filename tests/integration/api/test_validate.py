"""POST /consumers/validate/ connects to what a consumer would use and says what fails, in words a user
understands, creating nothing; POST /consumers/?validate=true refuses a body that fails with a 422."""
from __future__ import annotations

import socket

import pytest
import sqlalchemy as sa

from api.context import EXTENSION
from tests.integration.api.conftest import make_app


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def world(pg_clean, pg_url, redis_client, redis_test_url, tmp_path, kafka_bootstrap, topic_factory):
    root = tmp_path / "sink"
    root.mkdir()
    app = make_app(pg_url, redis_test_url, file_sink_root=str(root))
    topic = topic_factory(partitions=3)
    host, port = kafka_bootstrap.split(",")[0].rsplit(":", 1)
    body = {"broker_ip": host, "broker_port": int(port), "topic": topic, "consumer_group": "validate-g",
            "downstream_processors": [{"processor_type": "file_sink", "config": {"file_path": "out/a.log"}}]}
    yield app, app.test_client(), body, topic
    app.extensions[EXTENSION].close()


def _checks(response) -> dict[str, dict]:
    assert response.status_code == 200, response.json
    return {check["name"]: check for check in response.json["checks"]}


def test_a_good_body_is_valid_and_creates_nothing(world):
    _app, client, body, topic = world
    checks = _checks(client.post("/consumers/validate/", json=body))
    assert all(check["ok"] for check in checks.values()), checks
    assert "3 partition(s)" in checks["cluster topic"]["detail"]
    assert "processor 0 (file_sink) file_sink out/a.log" in checks
    assert client.get("/consumers/").json == []
    created = client.post("/consumers/", json=body, query_string={"validate": "true"})
    assert created.status_code == 201


def test_an_unreachable_broker_fails_with_a_message_and_no_secret(world, monkeypatch):
    _app, client, body, _topic = world
    monkeypatch.setenv("KCM_SECRET_VALIDATE_PW", "hunter2-do-not-show")
    port = _closed_port()
    security = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "u",
                "sasl.password": "${env:KCM_SECRET_VALIDATE_PW}"}
    response = client.post("/consumers/validate/", json={**body, "broker_port": port, "security": security})
    checks = _checks(response)
    assert response.json["valid"] is False
    assert checks["cluster reachable"]["ok"] is False
    assert f"Could not reach the brokers at 127.0.0.1:{port} within" in checks["cluster reachable"]["detail"]
    assert "hunter2" not in response.get_data(as_text=True)
    refused = client.post("/consumers/", json={**body, "broker_port": port}, query_string={"validate": "true"})
    assert refused.status_code == 422
    assert "cluster reachable" in refused.json["errors"]["checks"]
    assert client.get("/consumers/").json == []


def test_a_missing_topic_fails(world):
    _app, client, body, _topic = world
    checks = _checks(client.post("/consumers/validate/", json={**body, "topic": "kcm-test-no-such-topic-x1"}))
    assert checks["cluster reachable"]["ok"] is True
    assert checks["cluster topic"]["ok"] is False
    assert "Topic 'kcm-test-no-such-topic-x1' does not exist" in checks["cluster topic"]["detail"]


def test_an_unwritable_file_sink_root_fails(pg_clean, pg_url, redis_client, redis_test_url, tmp_path, world):
    _app, _client, body, _topic = world
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    app = make_app(pg_url, redis_test_url, file_sink_root=str(blocker / "root"))
    try:
        checks = _checks(app.test_client().post("/consumers/validate/", json=body))
    finally:
        app.extensions[EXTENSION].close()
    sink = checks["processor 0 (file_sink) file_sink out/a.log"]
    assert sink["ok"] is False and "is not a directory" in sink["detail"]


def test_a_table_of_the_wrong_shape_fails_and_a_creatable_one_passes(world, pg_engine):
    _app, client, body, _topic = world
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE wrong_shape (topic text, payload text)"))
    processors = [{"processor_type": "database_sync", "config": {"table": "wrong_shape"}},
                  {"processor_type": "database_sync", "config": {"table": "not_there_yet", "create_table": True}},
                  {"processor_type": "database_sync", "config": {"table": "not_there_either"}}]
    checks = _checks(client.post("/consumers/validate/", json={**body, "downstream_processors": processors}))
    wrong = checks["processor 0 (database_sync) database_sync wrong_shape"]
    assert wrong["ok"] is False and "lacks the column(s) partition, offset, key, value" in wrong["detail"]
    assert checks["processor 1 (database_sync) database_sync not_there_yet"]["ok"] is True
    absent = checks["processor 2 (database_sync) database_sync not_there_either"]
    assert absent["ok"] is False and "does not exist and create_table is false" in absent["detail"]
    with pg_engine.begin() as conn:  # validate created nothing
        assert conn.execute(sa.text("SELECT to_regclass('not_there_yet')")).scalar() is None
        conn.execute(sa.text("DROP TABLE wrong_shape"))


def test_a_missing_forward_target_topic_fails(world):
    _app, client, body, topic = world
    processors = [{"processor_type": "kafka_forward", "config": {"topic": "kcm-test-forward-absent-x1"}},
                  {"processor_type": "kafka_forward", "config": {"topic": topic}}]
    checks = _checks(client.post("/consumers/validate/", json={**body, "downstream_processors": processors}))
    absent = checks["processor 0 (kafka_forward) kafka_forward target topic"]
    assert absent["ok"] is False and "'kcm-test-forward-absent-x1' does not exist" in absent["detail"]
    assert checks["processor 1 (kafka_forward) kafka_forward target topic"]["ok"] is True


def test_validate_runs_the_checks_of_create_and_needs_the_operator_role(world):
    app, client, body, _topic = world
    assert client.post("/consumers/validate/", json={**body, "topic": "bad topic!"}).status_code == 422
    client.post("/consumers/", json={**body, "name": "taken"})
    assert client.post("/consumers/validate/", json={**body, "name": "taken"}).status_code == 409
    viewer = client.post("/api-keys/", json={"name": "v", "role": "viewer"}).json["token"]
    assert app.test_client(token=viewer).post("/consumers/validate/", json=body).status_code == 403
