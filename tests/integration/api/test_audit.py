"""The audit trail: every mutating call, allowed or denied, is a row written in the same transaction as the
change (before and after of the changed fields), readable by admins at GET /audit/ with filters; and the
per-deployment caps on consumers and replicas."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from api.auth.current import current_actor
from api.auth.principal import API_KEY, Actor, Principal
from api.auth.roles import Role
from api.context import EXTENSION
from api.services.errors import Invalid
from tests.integration.api.conftest import VALID_CONSUMER, consumer_data, make_app


def events(client, **filters) -> list[dict]:
    response = client.get("/audit/", query_string=filters)
    assert response.status_code == 200, response.json
    return response.json


def test_each_change_is_one_row_with_the_changed_fields_before_and_after(client, create_consumer):
    consumer = create_consumer()
    cid = consumer["id"]
    client.patch(f"/consumers/{cid}/", json={"replicas": 3, "topic": "orders"}, headers={"X-Request-ID": "patch-1"})
    client.post(f"/consumers/{cid}/start/")
    client.delete(f"/consumers/{cid}/")
    rows = events(client, target_type="consumer", target_id=cid)
    assert [e["action"] for e in rows] == ["consumer.delete", "consumer.start", "consumer.update", "consumer.create"]
    created, updated = rows[3], rows[2]
    assert created["before"] is None and created["after"]["consumer_group"] == "billing"
    assert updated["before"] == {"replicas": 1} and updated["after"] == {"replicas": 3}  # topic did not change
    assert updated["request_id"] == "patch-1" and updated["client_address"] == "127.0.0.1"
    assert updated["principal_type"] == "bootstrap" and updated["role"] == "admin"
    assert updated["outcome"] == "allowed" and updated["method"] == "PATCH"
    assert rows[1]["before"] == {"desired_state": "stopped", "generation": 1}
    assert rows[1]["after"] == {"desired_state": "running", "generation": 2}
    assert rows[0]["before"]["topic"] == "orders" and rows[0]["after"] is None


def test_processor_changes_are_audited(client, create_consumer):
    cid = create_consumer()["id"]
    processor = client.post(f"/consumers/{cid}/processors/",
                            json={"processor_type": "test_collector", "config": {"path": "/tmp/kcm-a"}}).json
    client.patch(f"/consumers/{cid}/processors/{processor['id']}/", json={"on_error": "skip"})
    client.delete(f"/consumers/{cid}/processors/{processor['id']}/")
    rows = events(client, target_type="processor", target_id=processor["id"])
    assert [e["action"] for e in rows] == ["processor.delete", "processor.update", "processor.create"]
    assert rows[1]["before"] == {"on_error": "retry"} and rows[1]["after"] == {"on_error": "skip"}


def test_the_row_is_written_in_the_transaction_of_the_change(client, create_consumer, pg_engine):
    """PostgreSQL stamps each row with the id of the transaction that wrote it (xmin): the change and its audit
    row carry the same one."""
    cid = create_consumer()["id"]

    def same_transaction(table_sql: str, action: str, target_id: str) -> bool:
        with pg_engine.connect() as conn:
            changed_by = conn.execute(sa.text(table_sql), {"id": target_id}).scalar_one()
            audited_by = conn.execute(sa.text(
                "SELECT xmin::text FROM audit_events WHERE action = :a AND target_id = :id "
                "ORDER BY id DESC LIMIT 1"), {"a": action, "id": target_id}).scalar_one()
        return changed_by == audited_by

    consumer_xmin = "SELECT xmin::text FROM consumers WHERE id = :id"
    assert same_transaction(consumer_xmin, "consumer.create", cid)
    client.patch(f"/consumers/{cid}/", json={"replicas": 2})
    assert same_transaction(consumer_xmin, "consumer.update", cid)
    client.post(f"/consumers/{cid}/start/")
    assert same_transaction(consumer_xmin, "consumer.start", cid)
    key = client.post("/api-keys/", json={"name": "k", "role": "viewer"}).json
    assert same_transaction("SELECT xmin::text FROM api_keys WHERE id = :id", "api_key.create", key["id"])
    client.delete(f"/api-keys/{key['id']}/")
    assert same_transaction("SELECT xmin::text FROM api_keys WHERE id = :id", "api_key.revoke", key["id"])


def test_a_change_that_fails_leaves_no_audit_row(kcm):
    created = kcm.consumers.create(consumer_data())
    with pytest.raises(Invalid):
        kcm.consumers.update(created.id, {"broker_ip": "127.0.0.1", "bootstrap_servers": ["a:1"]})
    with kcm.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT principal_type, action FROM audit_events")).all()
    assert [tuple(row) for row in rows] == [("system", "consumer.create")]  # outside a request: the system's


def test_a_service_call_records_the_actor_it_is_given(kcm):
    actor = Actor(Principal(API_KEY, "k-1", "ci", Role.ADMIN), "req-9", "10.0.0.7", "POST", "/consumers/")
    consumer = kcm.consumers.create(consumer_data(), actor=actor)
    kcm.consumers.restart(consumer.id, actor=actor)
    rows, total = kcm.audit.page({"principal": "ci"}, 0, 10)
    assert total == 2 and {r.action for r in rows} == {"consumer.create", "consumer.restart"}
    assert {(r.principal_id, r.request_id, r.client_address) for r in rows} == {("k-1", "req-9", "10.0.0.7")}
    assert current_actor().principal.kind == "system"


def test_denied_calls_are_audited_on_their_own(client, app, create_consumer):
    cid = create_consumer()["id"]
    viewer = client.post("/api-keys/", json={"name": "watcher", "role": "viewer"}).json
    as_viewer = app.test_client(token=viewer["token"])
    assert as_viewer.post(f"/consumers/{cid}/stop/").status_code == 403
    assert app.test_client(token=None).delete(f"/consumers/{cid}/").status_code == 401
    denied = events(client, outcome="denied")
    assert [(e["action"], e["status_code"], e["principal_name"]) for e in denied] == [
        ("consumer.delete", 401, None), ("consumer.stop", 403, "watcher")]
    assert denied[1]["principal_id"] == viewer["id"] and denied[1]["role"] == "viewer"
    assert events(client, principal="watcher", action="consumer.stop")[0]["outcome"] == "denied"
    assert events(client, principal=viewer["id"])[0]["action"] == "consumer.stop"
    # GET requests without credentials are not audited (scanners would flood the trail)
    app.test_client(token=None).get("/consumers/")
    assert len(events(client, outcome="denied")) == 2


def test_the_audit_trail_is_paginated_and_filtered_by_time(client, create_consumer):
    for _ in range(3):
        create_consumer()
    page = client.get("/audit/", query_string={"page_size": 2})
    assert len(page.json) == 2 and json.loads(page.headers["X-Pagination"])["total"] == 3
    now = datetime.now(UTC)
    assert len(events(client, since=(now - timedelta(minutes=5)).isoformat())) == 3
    assert events(client, until=(now - timedelta(minutes=5)).isoformat()) == []
    assert events(client, since=(now + timedelta(minutes=5)).isoformat()) == []
    bad = client.get("/audit/", query_string={"since": "yesterday"})
    assert bad.status_code == 422 and "since" in bad.json["errors"]["query"]
    assert client.get("/audit/", query_string={"outcome": "maybe"}).status_code == 422


def test_time_filters_with_any_offset_python_accepts_are_a_4xx_or_a_result_never_a_500(client, create_consumer):
    # found by schemathesis: PostgreSQL refuses UTC offsets beyond +-15:59, which Python's datetime accepts
    create_consumer()
    far = client.get("/audit/", query_string={"until": "0274-10-18T11:57:24.317039+16:04"})
    assert far.status_code == 200 and far.json == []
    assert len(events(client, since="2000-01-01T00:00:00-23:59")) == 1
    out_of_range = client.get("/audit/", query_string={"since": "0001-01-01T00:00:00+05:00"})
    assert out_of_range.status_code == 422 and "since" in out_of_range.json["errors"]["query"]


def test_the_deployment_caps_consumers_and_replicas(pg_clean, redis_client, redis_test_url, pg_url):
    app = make_app(pg_url, redis_test_url, max_consumers=2, max_replicas=4)
    try:
        client = app.test_client()
        for _ in range(2):
            assert client.post("/consumers/", json=VALID_CONSUMER).status_code == 201
        full = client.post("/consumers/", json=VALID_CONSUMER)
        assert full.status_code == 409 and "KCM_MAX_CONSUMERS" in full.json["message"]
        cid = client.get("/consumers/").json[0]["id"]
        too_many = client.patch(f"/consumers/{cid}/", json={"replicas": 5})
        assert too_many.status_code == 422 and "replicas" in too_many.json["errors"]["json"]
        assert client.patch(f"/consumers/{cid}/", json={"replicas": 4}).status_code == 200
        assert client.delete(f"/consumers/{cid}/").status_code == 204
        assert client.post("/consumers/", json={**VALID_CONSUMER, "replicas": 5}).status_code == 422
        assert client.post("/consumers/", json=VALID_CONSUMER).status_code == 201
    finally:
        app.extensions[EXTENSION].close()


def test_a_dead_letter_call_is_audited_once_it_succeeded(client, create_consumer, redis_client):
    """The dead-letter calls act on Redis; the guard writes their row after they succeeded."""
    cid = create_consumer()["id"]
    assert client.post(f"/consumers/{cid}/dead-letters/replay/").status_code == 202
    assert client.delete(f"/consumers/{cid}/dead-letters/missing/").status_code == 404  # failed: no row
    rows = events(client, action="dead_letter.replay_all")
    assert len(rows) == 1 and rows[0]["target_type"] == "consumer" and rows[0]["target_id"] == cid
    assert events(client, action="dead_letter.delete") == []
    # a call whose service wrote its row is not recorded twice
    assert [e["action"] for e in events(client, target_id=cid)] == ["dead_letter.replay_all", "consumer.create"]
