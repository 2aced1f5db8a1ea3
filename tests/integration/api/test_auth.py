"""Authentication: API keys (shown once, stored as a digest, revoked at once in every process), the bootstrap
admin token, 401/403 in the one error body, the request id, and the explicit KCM_AUTH=disabled opt-out."""
from __future__ import annotations

import hashlib
import logging
import uuid

import pytest
import sqlalchemy as sa

from api.context import EXTENSION
from tests.integration.api.conftest import ADMIN_TOKEN, VALID_CONSUMER, make_app

ERROR_KEYS = {"code", "status", "message", "errors"}


def create_key(client, role="viewer", scopes=None, name=None) -> dict:
    response = client.post("/api-keys/", json={"name": name or f"{role}-key", "role": role, "scopes": scopes})
    assert response.status_code == 201, response.json
    return response.json


def test_no_credentials_is_401_with_www_authenticate_and_the_error_body(app):
    response = app.test_client(token=None).get("/consumers/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert set(response.json) == ERROR_KEYS and response.json["code"] == 401


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer kcm_not-a-real-key", "Bearer a.b.c",
                                    "Token abc"])
def test_bad_credentials_are_401(app, header):
    response = app.test_client(token=None).get("/consumers/", headers={"Authorization": header})
    assert response.status_code == 401, response.json
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_api_key_token_is_shown_once_and_stored_only_as_its_digest(client, app, pg_engine):
    created = create_key(client, "operator", ["billing-*"], name="ops")
    token = created["token"]
    assert token.startswith("kcm_") and len(token) >= 4 + 43  # 32 random bytes, URL-safe base64
    assert {"id", "name", "role", "scopes", "created_at", "token"} <= set(created)
    assert created["role"] == "operator" and created["scopes"] == ["billing-*"]

    listed = client.get("/api-keys/").json
    assert [key["id"] for key in listed] == [created["id"]]
    assert "token" not in listed[0] and token not in str(listed)

    with pg_engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM api_keys")).mappings().one()
        audit_text = str(conn.execute(sa.text("SELECT * FROM audit_events")).mappings().all())
    assert row["token_digest"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(dict(row))
    assert token not in audit_text and row["token_digest"] not in audit_text

    # the key works, with its role
    as_key = app.test_client(token=token)
    assert as_key.get("/consumers/").status_code == 200
    assert as_key.post("/consumers/", json=VALID_CONSUMER).status_code == 403


def test_a_revoked_key_is_refused_at_once_by_every_api_process(pg_clean, redis_client, redis_test_url, pg_url):
    first, second = make_app(pg_url, redis_test_url), make_app(pg_url, redis_test_url)  # two API processes
    try:
        token_info = create_key(first.test_client(), "viewer")
        as_key_second = second.test_client(token=token_info["token"])
        assert as_key_second.get("/consumers/").status_code == 200  # seen (and any cache warmed) in process 2
        assert first.test_client().delete(f"/api-keys/{token_info['id']}/").status_code == 204
        refused = as_key_second.get("/consumers/")
        assert refused.status_code == 401 and "revoked" in refused.json["message"]
        assert first.test_client().delete(f"/api-keys/{token_info['id']}/").status_code == 404
        revoked = first.test_client().get("/api-keys/").json[0]
        assert revoked["revoked_at"] is not None
    finally:
        first.extensions[EXTENSION].close()
        second.extensions[EXTENSION].close()


def test_roles_include_the_ones_before(client, app, create_consumer):
    consumer = create_consumer()
    viewer = app.test_client(token=create_key(client, "viewer")["token"])
    operator = app.test_client(token=create_key(client, "operator")["token"])
    assert viewer.get(f"/consumers/{consumer['id']}/").status_code == 200
    refused = viewer.post(f"/consumers/{consumer['id']}/start/")
    assert refused.status_code == 403 and set(refused.json) == ERROR_KEYS
    assert "operator" in refused.json["message"]
    assert operator.post(f"/consumers/{consumer['id']}/start/").status_code == 200
    assert operator.get(f"/consumers/{consumer['id']}/status/").status_code == 200
    assert operator.delete(f"/consumers/{consumer['id']}/").status_code == 403
    assert operator.get("/api-keys/").status_code == 403
    assert operator.get("/audit/").status_code == 403


def test_api_key_input_is_validated_with_field_messages(client):
    for body, field in (({"name": "x", "role": "root"}, "role"), ({"role": "viewer"}, "name"),
                        ({"name": "x", "role": "viewer", "scopes": []}, "scopes"),
                        ({"name": "x", "role": "viewer", "scopes": ["bad[pattern]"]}, "scopes"),
                        ({"name": " ", "role": "viewer"}, "name")):
        response = client.post("/api-keys/", json=body)
        assert response.status_code == 422, (body, response.json)
        assert field in response.json["errors"]["json"], response.json
    assert client.delete(f"/api-keys/{uuid.uuid4()}/").status_code == 404


def test_a_scoped_key_cannot_create_keys_or_read_the_audit_trail(client, app):
    scoped_admin = app.test_client(token=create_key(client, "admin", ["billing-*"])["token"])
    assert scoped_admin.post("/api-keys/", json={"name": "wider", "role": "admin"}).status_code == 403
    assert scoped_admin.get("/audit/").status_code == 403


def test_the_request_id_is_echoed_when_sane_and_generated_otherwise(client, app):
    assert client.get("/consumers/", headers={"X-Request-ID": "req-42.a:b"}).headers["X-Request-ID"] == "req-42.a:b"
    generated = client.get("/consumers/", headers={"X-Request-ID": "bad id\twith spaces" * 20}).headers["X-Request-ID"]
    assert generated and " " not in generated and len(generated) == 32
    assert app.test_client(token=None).get("/consumers/").headers["X-Request-ID"]  # on errors too
    assert client.get("/openapi.json").headers["X-Request-ID"]


def test_a_failed_authentication_is_audited_without_the_token(client, app, pg_engine):
    presented = "kcm_" + "x" * 43
    response = app.test_client(token=presented).post("/consumers/", json=VALID_CONSUMER,
                                                     headers={"X-Request-ID": "failed-auth-1"})
    assert response.status_code == 401
    events = client.get("/audit/", query_string={"action": "authentication"}).json
    assert len(events) == 1
    event = events[0]
    assert event["outcome"] == "denied" and event["status_code"] == 401
    assert event["request_id"] == "failed-auth-1" and event["client_address"] == "127.0.0.1"
    assert event["principal_type"] == "anonymous" and event["path"] == "/consumers/"
    with pg_engine.connect() as conn:
        rows = str(conn.execute(sa.text("SELECT * FROM audit_events")).mappings().all())
    assert presented not in rows and hashlib.sha256(presented.encode()).hexdigest() not in rows


def test_auth_disabled_is_an_explicit_loudly_logged_opt_out(pg_clean, redis_client, redis_test_url, pg_url, caplog):
    with caplog.at_level(logging.WARNING, logger="kcm.api.auth"):
        app = make_app(pg_url, redis_test_url, auth="disabled")
    try:
        assert any("AUTHENTICATION IS DISABLED" in r.getMessage() for r in caplog.records)
        anonymous = app.test_client(token=None)
        assert anonymous.post("/consumers/", json=VALID_CONSUMER).status_code == 201
        assert anonymous.get("/audit/").json[0]["principal_type"] == "auth_disabled"
    finally:
        app.extensions[EXTENSION].close()


def test_auth_is_on_by_default_and_the_bootstrap_token_is_an_admin(pg_clean, redis_client, redis_test_url, pg_url):
    from schema.settings import Settings, SettingsError

    assert Settings.from_env({}).auth == "enabled"
    with pytest.raises(SettingsError, match="KCM_AUTH"):
        Settings.from_env({"KCM_AUTH": "off"})
    with pytest.raises(SettingsError) as short:
        Settings.from_env({"KCM_BOOTSTRAP_ADMIN_TOKEN": "short-secret"})
    assert "short-secret" not in str(short.value)
    assert "bootstrap_admin_token" not in repr(Settings.from_env({"KCM_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN}))
    app = make_app(pg_url, redis_test_url, bootstrap_admin_token="")
    try:  # without a bootstrap token the same token is just unknown
        assert app.test_client().get("/consumers/").status_code == 401
    finally:
        app.extensions[EXTENSION].close()


def test_metrics_needs_a_viewer_unless_declared_public(pg_clean, redis_client, redis_test_url, pg_url):
    for public, anonymous_status in ((False, 401), (True, 200)):
        app = make_app(pg_url, redis_test_url, metrics_public=public)
        try:
            assert app.test_client(token=None).get("/metrics").status_code == anonymous_status
            viewer = create_key(app.test_client(), "viewer")["token"]
            assert app.test_client(token=viewer).get("/metrics").status_code == 200
        finally:
            app.extensions[EXTENSION].close()


# ---------------------------------------------------------------------- the per-process key cache
@pytest.fixture
def two_processes(pg_clean, redis_client, redis_test_url, pg_url):
    """Two API apps on one database: two processes' worth of caches."""
    apps = [make_app(pg_url, redis_test_url), make_app(pg_url, redis_test_url)]
    yield apps
    for app in apps:
        app.extensions[EXTENSION].close()


def database_checkouts(engine) -> list:
    """Every connection the engine hands out from now on (each a round trip, at least)."""
    seen = []
    sa.event.listen(engine, "checkout", lambda *args: seen.append(1))
    return seen


def test_a_warm_list_costs_one_round_trip_and_a_revoke_is_refused_on_the_very_next_one(two_processes):
    first, second = two_processes
    key = create_key(first.test_client(), "viewer")
    as_key = second.test_client(token=key["token"])
    for _ in range(2):  # the key's lookup and the page, then both from the caches
        assert as_key.get("/consumers/").status_code == 200
    checkouts = database_checkouts(second.extensions[EXTENSION].engine)
    assert as_key.get("/consumers/").status_code == 200
    assert len(checkouts) == 1  # the change version, read once for the key and the page together

    assert first.test_client().delete(f"/api-keys/{key['id']}/").status_code == 204
    refused = as_key.get("/consumers/")
    assert refused.status_code == 401 and "revoked" in refused.json["message"]
    assert as_key.get("/processor-types/").status_code == 401  # every endpoint, not only the list


def test_role_scope_and_row_changes_made_in_sql_apply_on_the_next_request(two_processes, pg_engine):
    app = two_processes[0]
    key = create_key(app.test_client(), "viewer")
    as_key = app.test_client(token=key["token"])
    assert as_key.get("/consumers/").status_code == 200 and as_key.get("/consumers/").status_code == 200
    assert as_key.post("/consumers/", json=VALID_CONSUMER).status_code == 403
    with pg_engine.begin() as conn:  # hand-written SQL: the trigger of migration 0006 moves the version
        conn.execute(sa.text("UPDATE api_keys SET role = 'admin' WHERE id = :id"), {"id": key["id"]})
    created = as_key.post("/consumers/", json=VALID_CONSUMER)
    assert created.status_code == 201
    with pg_engine.begin() as conn:
        conn.execute(sa.text("""UPDATE api_keys SET scopes = '["other-*"]' WHERE id = :id"""), {"id": key["id"]})
    assert as_key.get("/consumers/").json == []  # its page is the new scope's
    assert as_key.get(f"/consumers/{created.json['id']}/").status_code == 404
    with pg_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM api_keys WHERE id = :id"), {"id": key["id"]})
    assert as_key.get("/consumers/").status_code == 401


def test_without_a_version_row_every_request_looks_its_key_up(two_processes, pg_engine):
    first, second = two_processes
    key = create_key(first.test_client(), "viewer")
    as_key = second.test_client(token=key["token"])
    with pg_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM kcm_changes"))
    assert as_key.get("/consumers/").status_code == 200
    with pg_engine.begin() as conn:  # a revoke no trigger can report (the counter is gone): still refused
        conn.execute(sa.text("ALTER TABLE api_keys DISABLE TRIGGER USER"))
        conn.execute(sa.text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE id = :id"), {"id": key["id"]})
        conn.execute(sa.text("ALTER TABLE api_keys ENABLE TRIGGER USER"))
    assert as_key.get("/consumers/").status_code == 401


def test_a_scoped_key_cannot_read_metrics_or_supervisors(client, app):
    """Both cover every consumer; they are not filtered by scope, so a scoped key is refused them."""
    scoped = app.test_client(token=create_key(client, "admin", ["billing-*"])["token"])
    for path in ("/metrics", "/supervisors/"):
        refused = scoped.get(path)
        assert refused.status_code == 403 and "not limited to consumer groups" in refused.json["message"], path
    viewer = app.test_client(token=create_key(client, "viewer")["token"])
    assert viewer.get("/metrics").status_code == 200 and viewer.get("/supervisors/").status_code == 200


def test_the_api_engine_keeps_bound_values_out_of_database_errors(app):
    """SQLAlchemy renders a failed statement's parameters into the error's text (and so into a logged
    traceback) unless the engine hides them."""
    engine = app.extensions[EXTENSION].engine
    with pytest.raises(sa.exc.DBAPIError) as raised, engine.connect() as conn:
        conn.execute(sa.text("SELECT CAST(:value AS text), 1 / 0"), {"value": "kcm_a-bound-secret"})
    assert "division by zero" in str(raised.value)
    assert "kcm_a-bound-secret" not in str(raised.value)
