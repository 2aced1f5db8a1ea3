"""Per-team scopes against broken object-level authorization: outside its consumer-group patterns a consumer
does not exist for a principal — lists leave it out (scoped totals, a page cache keyed on the scope), every
``/consumers/{id}/...`` path is 404 — and creating or moving a consumer there is 403. On both databases."""
from __future__ import annotations

import json

import pytest

from api.context import EXTENSION
from tests.integration.api.conftest import VALID_CONSUMER, make_app


@pytest.fixture
def scoped_world(database_url, redis_client, redis_test_url):
    app = make_app(database_url, redis_test_url)
    admin = app.test_client()

    def consumer(group: str) -> dict:
        response = admin.post("/consumers/", json={**VALID_CONSUMER, "consumer_group": group})
        assert response.status_code == 201, response.json
        return response.json

    groups = ["billing-eu", "billing-us", "billing_x", "billingXx", "Billing-eu", "search", "bill%ing"]
    consumers = {group: consumer(group) for group in groups}
    key = admin.post("/api-keys/", json={"name": "team", "role": "admin", "scopes": ["billing-*", "billing_?"]}).json
    yield app, admin, app.test_client(token=key["token"]), consumers
    app.extensions[EXTENSION].close()


def test_lists_hold_only_the_groups_in_scope_with_scoped_totals(scoped_world):
    _app, admin, team, consumers = scoped_world
    listed = team.get("/consumers/", query_string={"page_size": 2})
    assert listed.status_code == 200
    # '_' and '%' are literal characters, and matching is case-sensitive, on both databases
    assert json.loads(listed.headers["X-Pagination"])["total"] == 3
    page2 = team.get("/consumers/", query_string={"page_size": 2, "page": 2}).json
    seen = {c["consumer_group"] for c in listed.json + page2}
    assert seen == {"billing-eu", "billing-us", "billing_x"}
    # the same page for the admin is not served from the team's cache entry, nor the other way round
    assert json.loads(admin.get("/consumers/", query_string={"page_size": 2}).headers["X-Pagination"])["total"] == 7
    assert json.loads(team.get("/consumers/", query_string={"page_size": 2}).headers["X-Pagination"])["total"] == 3
    assert team.get("/consumers/", query_string={"consumer_group": "search"}).json == []


def test_every_path_of_a_consumer_outside_the_scope_is_the_404_of_a_missing_one(scoped_world):
    app, admin, team, consumers = scoped_world
    hidden = consumers["search"]["id"]
    processor = admin.post(f"/consumers/{hidden}/processors/",
                           json={"processor_type": "test_collector", "config": {"path": "/tmp/kcm-s"}}).json
    missing = "00000000-0000-4000-8000-000000000000"
    calls = [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "start/"), ("POST", "stop/"),
             ("POST", "restart/"), ("GET", "status/"), ("GET", "processors/"), ("POST", "processors/"),
             ("GET", f"processors/{processor['id']}/"), ("PATCH", f"processors/{processor['id']}/"),
             ("DELETE", f"processors/{processor['id']}/"), ("GET", "dead-letters/"),
             ("POST", "dead-letters/replay/"), ("GET", "dead-letters/some-id/"),
             ("DELETE", "dead-letters/some-id/"), ("POST", "dead-letters/some-id/replay/")]
    for method, tail in calls:
        valid = {"client_id": "x"} if tail == "" else {"on_error": "skip"} if method == "PATCH" else (
            {"processor_type": "test_collector", "config": {"path": "/tmp/kcm-s"}} if tail == "processors/" else None)
        for body in (valid, {"not a field": True}):  # an invalid body must not tell missing from hidden either
            hidden_response = team.open(f"/consumers/{hidden}/{tail}", method=method, json=body)
            missing_response = team.open(f"/consumers/{missing}/{tail}", method=method, json=body)
            assert hidden_response.status_code == missing_response.status_code == 404, (method, tail, body)
            assert hidden_response.json["message"] == missing_response.json["message"].replace(missing, hidden)
    # nothing happened to it
    after = admin.get(f"/consumers/{hidden}/").json
    assert after["client_id"] is None and after["desired_state"] == "stopped"
    assert len(after["downstream_processors"]) == 1
    # and the in-scope consumer is reachable
    assert team.get(f"/consumers/{consumers['billing-eu']['id']}/status/").status_code == 200


def test_creating_or_moving_a_consumer_outside_the_scope_is_403(scoped_world):
    _app, admin, team, consumers = scoped_world
    refused = team.post("/consumers/", json={**VALID_CONSUMER, "consumer_group": "search-2"})
    assert refused.status_code == 403 and "outside" in refused.json["message"]
    assert team.post("/consumers/", json={**VALID_CONSUMER, "consumer_group": "billing-new"}).status_code == 201
    own = consumers["billing-eu"]["id"]
    moved = team.patch(f"/consumers/{own}/", json={"consumer_group": "search"})
    assert moved.status_code == 403
    assert admin.get(f"/consumers/{own}/").json["consumer_group"] == "billing-eu"
    assert team.patch(f"/consumers/{own}/", json={"consumer_group": "billing-de"}).status_code == 200
    denied = admin.get("/audit/", query_string={"outcome": "denied"}).json
    assert {(e["action"], e["status_code"]) for e in denied} >= {("consumer.create", 403), ("consumer.update", 403)}
