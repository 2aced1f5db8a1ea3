"""POST /consumers/{id}/pause/ and /resume/ over HTTP, on the real PostgreSQL and Redis (no supervisor): the
desired state, the generation that must not move, the key and notification the live workers follow, the 409s
and the 503, the audit trail."""
from __future__ import annotations

import json

import pytest

from api.context import EXTENSION
from schema import keys
from tests.integration.api.conftest import VALID_CONSUMER, closed_port_url, make_app
from tests.support.kafka import wait_for


@pytest.fixture
def api(pg_clean, pg_url, redis_client, redis_test_url):
    app = make_app(pg_url, redis_test_url)
    yield app.test_client()
    app.extensions[EXTENSION].close()


def pause_key(redis_client, cid: str) -> dict | None:
    raw = redis_client.get(keys.pause_key(cid))
    return None if raw is None else json.loads(raw)


def last_command(redis_client) -> dict[str, str]:
    (_id, fields), = redis_client.xrevrange(keys.COMMAND_STREAM, count=1)
    return {k.decode(): v.decode() for k, v in fields.items()}


def test_pause_and_resume_keep_the_generation_and_tell_the_live_workers(api, redis_client):
    cid = api.post("/consumers/", json={**VALID_CONSUMER, "name": "orders-pause"}).json["id"]
    assert api.post(f"/consumers/{cid}/start/").json["generation"] == 2
    notifications = redis_client.pubsub(ignore_subscribe_messages=True)
    notifications.subscribe(keys.pause_key(cid))

    paused = api.post("/consumers/orders-pause/pause/")  # the name works as for every control call
    assert paused.status_code == 200, paused.json
    assert paused.json["desired_state"] == "paused" and paused.json["generation"] == 2
    assert paused.json["action"] == "pause" and "paused" in paused.json["message"]
    assert pause_key(redis_client, cid) == {"paused": True, "generation": 2}
    assert 0 < redis_client.ttl(keys.pause_key(cid)) <= keys.PAUSE_TTL
    message = wait_for(lambda: notifications.get_message(timeout=0.1), timeout=5, message="a pause notification")
    assert json.loads(message["data"]) == {"paused": True, "generation": 2}
    assert last_command(redis_client)["action"] == "pause"
    status = api.get(f"/consumers/{cid}/status/")
    assert status.status_code == 200 and status.json["desired_state"] == "paused"

    again = api.post(f"/consumers/{cid}/pause/")  # idempotent, and it re-sends the key (heals a missed one)
    assert again.status_code == 200 and "already paused; nothing changed" in again.json["message"]
    redis_client.delete(keys.pause_key(cid))
    assert api.post(f"/consumers/{cid}/pause/").status_code == 200
    assert pause_key(redis_client, cid) == {"paused": True, "generation": 2}

    resumed = api.post(f"/consumers/{cid}/resume/")
    assert resumed.status_code == 200, resumed.json
    assert resumed.json["desired_state"] == "running" and resumed.json["generation"] == 2
    assert pause_key(redis_client, cid) == {"paused": False, "generation": 2}
    assert last_command(redis_client)["action"] == "resume"
    assert "already running" in api.post(f"/consumers/{cid}/resume/").json["message"]

    events = api.get(f"/audit/?target_id={cid}").json
    actions = [e["action"] for e in events]
    assert actions.count("consumer.pause") == 3 and actions.count("consumer.resume") == 2
    pause_event = next(e for e in reversed(events) if e["action"] == "consumer.pause")
    assert pause_event["before"] == {"desired_state": "running", "generation": 2}
    assert pause_event["after"] == {"desired_state": "paused", "generation": 2}


def test_start_resumes_a_paused_consumer_in_place_and_stop_stops_it(api, redis_client):
    cid = api.post("/consumers/", json=VALID_CONSUMER).json["id"]
    api.post(f"/consumers/{cid}/start/")
    api.post(f"/consumers/{cid}/pause/")
    started = api.post(f"/consumers/{cid}/start/").json
    assert started["desired_state"] == "running" and started["generation"] == 2  # no new processes
    assert "resumed" in started["message"]
    assert pause_key(redis_client, cid) == {"paused": False, "generation": 2}

    api.post(f"/consumers/{cid}/pause/")
    stopped = api.post(f"/consumers/{cid}/stop/").json
    assert stopped["desired_state"] == "stopped" and stopped["generation"] == 3  # the workers go


def test_a_config_change_to_a_paused_consumer_makes_new_workers_that_start_paused(api):
    cid = api.post("/consumers/", json=VALID_CONSUMER).json["id"]
    api.post(f"/consumers/{cid}/start/")
    api.post(f"/consumers/{cid}/pause/")
    patched = api.patch(f"/consumers/{cid}/", json={"client_id": "after-pause"}).json
    assert patched["generation"] == 3 and patched["desired_state"] == "paused"


def test_pause_or_resume_of_a_stopped_consumer_is_a_409_that_says_what_to_do(api, redis_client):
    cid = api.post("/consumers/", json=VALID_CONSUMER).json["id"]
    for verb in ("pause", "resume"):
        response = api.post(f"/consumers/{cid}/{verb}/")
        assert response.status_code == 409, response.json
        assert response.json["code"] == 409 and response.json["status"] == "Conflict"
        assert "stopped" in response.json["message"] and "/start/" in response.json["message"]
    consumer = api.get(f"/consumers/{cid}/").json
    assert consumer["desired_state"] == "stopped" and consumer["generation"] == 1
    assert redis_client.get(keys.pause_key(cid)) is None
    assert api.post("/consumers/no-such-consumer/pause/").status_code == 404


def test_a_pause_that_cannot_reach_redis_is_a_503_and_changes_nothing(pg_clean, pg_url):
    app = make_app(pg_url, closed_port_url())
    try:
        api = app.test_client()
        cid = api.post("/consumers/", json=VALID_CONSUMER).json["id"]
        assert api.post(f"/consumers/{cid}/start/").status_code == 200  # a lost wake-up is fine for start
        response = api.post(f"/consumers/{cid}/pause/")
        assert response.status_code == 503, response.json
        assert "Redis is unreachable" in response.json["message"] and "nothing changed" in response.json["message"]
        consumer = api.get(f"/consumers/{cid}/").json
        assert consumer["desired_state"] == "running" and consumer["generation"] == 2
    finally:
        app.extensions[EXTENSION].close()
