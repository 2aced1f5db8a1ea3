"""Consumer names: unique slugs that stand for the id in every /consumers/{id}/... path; a name outside the
caller's scopes is the same 404 as an unknown one."""
from __future__ import annotations

import pytest

from api.context import EXTENSION
from tests.integration.api.conftest import VALID_CONSUMER, make_app


def test_create_with_a_name_and_reach_every_path_by_it(client):
    created = client.post("/consumers/", json={**VALID_CONSUMER, "name": "orders-archive"})
    assert created.status_code == 201 and created.json["name"] == "orders-archive"
    cid = created.json["id"]
    for path in ("", "status/", "processors/", "dead-letters/", "errors/", "versions/", "versions/1/"):
        response = client.get(f"/consumers/orders-archive/{path}")
        assert response.status_code == 200, (path, response.json)
    assert client.get("/consumers/orders-archive").json["id"] == cid  # the slash-less form too
    started = client.post("/consumers/orders-archive/start/")
    assert started.status_code == 200 and started.json["id"] == cid
    processor = client.post("/consumers/orders-archive/processors/",
                            json={"processor_type": "file_sink", "config": {"file_path": "a.log"}})
    assert processor.status_code == 201 and processor.json["consumer_id"] == cid
    assert client.patch(f"/consumers/orders-archive/processors/{processor.json['id']}/",
                        json={"on_error": "skip"}).status_code == 200
    assert client.post("/consumers/orders-archive/stop/").status_code == 200
    assert client.post("/consumers/orders-archive/restart/").status_code == 200
    renamed = client.patch("/consumers/orders-archive/", json={"name": "orders-archive-2"})
    assert renamed.status_code == 200 and renamed.json["name"] == "orders-archive-2"
    assert client.get("/consumers/orders-archive/").status_code == 404
    listed = client.get("/consumers/", query_string={"name": "orders-archive-2"}).json
    assert [c["id"] for c in listed] == [cid]
    assert client.delete("/consumers/orders-archive-2/").status_code == 204
    assert client.get(f"/consumers/{cid}/").status_code == 404


def test_a_name_that_collides_is_409_and_a_bad_slug_is_422(client):
    client.post("/consumers/", json={**VALID_CONSUMER, "name": "taken"})
    collide = client.post("/consumers/", json={**VALID_CONSUMER, "name": "taken"})
    assert collide.status_code == 409 and "taken" in collide.json["errors"]["json"]["name"][0]
    other = client.post("/consumers/", json=VALID_CONSUMER).json["id"]
    assert client.patch(f"/consumers/{other}/", json={"name": "taken"}).status_code == 409
    for bad in ("Upper", "-lead", "trail-", "a" * 101, "under_score", "", "validate",
                "3f2a6c1e-1111-4222-8333-444455556666"):
        response = client.post("/consumers/", json={**VALID_CONSUMER, "name": bad})
        assert response.status_code == 422, bad
        assert "name" in response.json["errors"]["json"], bad
    assert client.post("/consumers/", json={**VALID_CONSUMER, "name": "a" * 100}).status_code == 201
    assert client.get("/consumers/", query_string={"name": "Bad Name"}).status_code == 422
    # an unknown name is the one 404 body
    missing = client.get("/consumers/no-such-consumer/")
    assert missing.status_code == 404 and missing.json["message"] == "consumer no-such-consumer not found"


@pytest.fixture
def scoped(pg_clean, pg_url, redis_client, redis_test_url):
    app = make_app(pg_url, redis_test_url)
    admin = app.test_client()
    admin.post("/consumers/", json={**VALID_CONSUMER, "consumer_group": "search", "name": "hidden"})
    admin.post("/consumers/", json={**VALID_CONSUMER, "consumer_group": "billing-eu", "name": "mine"})
    key = admin.post("/api-keys/", json={"name": "team", "role": "admin", "scopes": ["billing-*"]}).json
    yield app, app.test_client(token=key["token"])
    app.extensions[EXTENSION].close()


def test_a_name_outside_the_scope_is_the_same_404_as_an_unknown_one(scoped):
    app, team = scoped
    assert team.get("/consumers/mine/").status_code == 200
    for method, tail in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "start/"), ("GET", "versions/"),
                         ("POST", "rollback/"), ("GET", "status/")):
        hidden = team.open(f"/consumers/hidden/{tail}", method=method, json={})
        unknown = team.open(f"/consumers/hiddem/{tail}", method=method, json={})
        assert hidden.status_code == unknown.status_code == 404, (method, tail)
        assert hidden.json["message"] == "consumer hidden not found"  # never the hidden consumer's id
        assert hidden.json["errors"] == unknown.json["errors"]
    # without credentials a name is a 401 whether it exists or not
    anonymous = app.test_client(token=None)
    assert anonymous.get("/consumers/hidden/").status_code == anonymous.get("/consumers/hiddem/").status_code == 401
