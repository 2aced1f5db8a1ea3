"""GET /consumers/{id}/status/: reads the hashes the supervisor and the workers write (written here the way
they would), folds the replica states, and answers 503 when Redis is unreachable."""
from __future__ import annotations

import json
import time
import uuid

import pytest
import sqlalchemy as sa

from schema import keys


def iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


def write_state(redis_client, cid, n, state, **fields):
    now = time.time()
    mapping = {"state": state, "pid": "4242", "host": "node-1", "supervisor_id": "sup-1", "generation": "2",
               "started_at": f"{now - 60:.3f}", "restarts": "0", "last_error": "", "updated_at": f"{now:.3f}"}
    mapping.update({k: str(v) for k, v in fields.items()})
    redis_client.hset(keys.replica_state_key(cid, n), mapping=mapping)
    # a live supervisor: a replica whose supervisor key expired is UNKNOWN/stale
    redis_client.hset(keys.supervisor_key(mapping["supervisor_id"]), mapping={"last_heartbeat": f"{now:.3f}"})
    redis_client.expire(keys.supervisor_key(mapping["supervisor_id"]), 30)
    return mapping


def write_heartbeat(redis_client, cid, n, **fields):
    now = time.time()
    mapping = {"pid": "4242", "host": "node-1", "generation": "2", "started_at": f"{now - 60:.3f}",
               "last_heartbeat": f"{now:.3f}", "partitions": json.dumps(["orders:0", "orders:1"]),
               "messages": "1200", "bytes": "65536", "errors": "1", "last_error": ""}
    mapping.update({k: str(v) for k, v in fields.items()})
    key = keys.heartbeat_key(cid, n)
    redis_client.hset(key, mapping=mapping)
    redis_client.expire(key, 30)
    return mapping


@pytest.mark.parametrize("suffix", ["/", ""])
def test_nothing_reported_is_unknown(client, create_consumer, redis_client, suffix):
    consumer = create_consumer(replicas=2)
    response = client.get(f"/consumers/{consumer['id']}/status{suffix}")
    assert response.status_code == 200
    body = response.json
    assert body["state"] == "UNKNOWN" and body["status"] == "INACTIVE"
    assert body["desired_state"] == "stopped" and body["generation"] == 1
    assert [r["state"] for r in body["replicas"]] == ["UNKNOWN", "UNKNOWN"]
    assert [r["alive"] for r in body["replicas"]] == [False, False]


def test_running_replicas_show_process_details_from_both_hashes(client, create_consumer, redis_client, pg_engine):
    consumer = create_consumer(replicas=2)
    cid = consumer["id"]
    client.post(f"/consumers/{cid}/start/")
    with pg_engine.begin() as conn:  # the supervisor writes the coarse status back
        conn.execute(sa.text("UPDATE consumers SET status='ACTIVE' WHERE id=:id"), {"id": cid})
    state0 = write_state(redis_client, cid, 0, "RUNNING", restarts=2)
    beat0 = write_heartbeat(redis_client, cid, 0)
    write_state(redis_client, cid, 1, "RUNNING", pid=4343)

    body = client.get(f"/consumers/{cid}/status/").json
    # replica 1 has no heartbeat of its own: not RUNNING, whatever its state hash says
    assert body["status"] == "ACTIVE" and body["state"] == "UNKNOWN"
    assert body["desired_state"] == "running" and body["generation"] == 2
    first, second = body["replicas"]
    assert first["replica"] == 0 and first["state"] == "RUNNING" and first["alive"] is True
    assert first["pid"] == 4242 and first["host"] == "node-1" and first["restarts"] == 2
    assert first["started_at"] == iso(float(state0["started_at"]))
    assert first["last_heartbeat"] == iso(float(beat0["last_heartbeat"]))
    assert first["partitions"] == ["orders:0", "orders:1"]
    assert (first["messages"], first["bytes"], first["errors"]) == (1200, 65536, 1)
    assert first["last_error"] is None
    assert second["pid"] == 4343 and second["alive"] is False and second["last_heartbeat"] is None
    assert second["state"] == "UNKNOWN" and "no heartbeat" in second["reason"]


@pytest.mark.parametrize("states,expected", [
    (["RUNNING", "FATAL"], "FATAL"),
    (["BACKOFF", "EXITED"], "BACKOFF"),
    (["EXITED", "STARTING"], "EXITED"),
    (["RUNNING", "STARTING"], "STARTING"),
    (["STOPPING", "RUNNING"], "STOPPING"),
    (["STOPPED", "RUNNING"], "RUNNING"),
    (["STOPPED", "STOPPED"], "STOPPED"),
    (["STOPPED", None], "STOPPED"),
])
def test_consumer_state_is_the_most_severe_replica_state(client, create_consumer, redis_client, states, expected):
    consumer = create_consumer(replicas=len(states))
    for n, state in enumerate(states):
        if state:
            write_state(redis_client, consumer["id"], n, state)
            if state == "RUNNING":  # RUNNING is believed only with the process's own heartbeat
                write_heartbeat(redis_client, consumer["id"], n)
    body = client.get(f"/consumers/{consumer['id']}/status/").json
    assert body["state"] == expected
    assert [r["state"] for r in body["replicas"]] == [s or "UNKNOWN" for s in states]


def test_a_crash_loop_shows_the_last_error(client, create_consumer, redis_client):
    consumer = create_consumer()
    write_state(redis_client, consumer["id"], 0, "FATAL", restarts=4, last_error="exit 78: unknown topic")
    body = client.get(f"/consumers/{consumer['id']}/status/").json
    assert body["state"] == "FATAL"
    assert body["replicas"][0]["last_error"] == "exit 78: unknown topic"
    assert body["replicas"][0]["restarts"] == 4


def test_garbled_hash_values_do_not_break_the_status(client, create_consumer, redis_client):
    consumer = create_consumer()
    write_state(redis_client, consumer["id"], 0, "DANCING", pid="x", started_at="yesterday")
    write_heartbeat(redis_client, consumer["id"], 0, partitions="not json", messages="many")
    body = client.get(f"/consumers/{consumer['id']}/status/").json
    replica = body["replicas"][0]
    assert replica["state"] == "UNKNOWN" and replica["pid"] is None and replica["started_at"] is None
    assert replica["partitions"] is None and replica["messages"] is None


def test_status_of_a_missing_consumer_is_404(client):
    assert client.get(f"/consumers/{uuid.uuid4()}/status/").status_code == 404


@pytest.mark.parametrize("suffix", ["/", ""])
def test_redis_down_makes_status_503_with_the_error_body(redis_down_app, suffix):
    client = redis_down_app.test_client()
    consumer = client.post("/consumers/", json={"broker_ip": "localhost", "broker_port": 9092,
                                                "topic": "t", "consumer_group": "g"}).json
    response = client.get(f"/consumers/{consumer['id']}/status{suffix}")
    assert response.status_code == 503
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert "Redis" in response.json["message"]
    assert client.get(f"/consumers/{consumer['id']}/").status_code == 200
