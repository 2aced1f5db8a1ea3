"""SQLite allows one supervisor (a second exits 73 with a clear error); the API validates and stores a consumer's
placement labels, and GET /supervisors/ shows each supervisor's slots and a replica's epoch in its status."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import sqlalchemy as sa

from schema.db import make_engine
from schema.exits import EXIT_SUPERVISOR_RUNNING
from schema.models import SupervisorRow
from tests.integration.runtime.conftest import FAST
from tests.support.kafka import wait_for

PROCESSORS = [{"processor_type": "file_sink", "config": {"file_path": "p.jsonl"}}]


def test_a_second_supervisor_on_sqlite_refuses_to_start_with_exit_73(sqlite_url, redis_test_url, tmp_path):
    env = {**os.environ, **FAST, "KCM_DATABASE_URL": sqlite_url, "KCM_REDIS_URL": redis_test_url}
    first = subprocess.Popen([sys.executable, "-m", "supervisor"], env={**env, "KCM_SUPERVISOR_ID": "one"},
                             stdout=open(tmp_path / "one.log", "ab"), stderr=subprocess.STDOUT)
    engine = make_engine(sqlite_url)
    try:
        def registered():
            with engine.connect() as conn:
                return conn.execute(sa.select(SupervisorRow.id)).scalars().all() == ["one"]
        wait_for(registered, timeout=30, message="the first supervisor registered")
        second = subprocess.run([sys.executable, "-m", "supervisor"], env={**env, "KCM_SUPERVISOR_ID": "two"},
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == EXIT_SUPERVISOR_RUNNING == 73
        assert "SupervisorRefused: supervisor one is running on this SQLite database and only one may" in second.stderr
        assert first.poll() is None  # the first one runs on, untouched
    finally:
        first.terminate()
        assert first.wait(30) == 0
        engine.dispose()
    # its clean exit withdrew the registration: a new one starts
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(SupervisorRow)).scalar() == 0


def _consumer(client, kafka_bootstrap, **extra):
    body = {"bootstrap_servers": [kafka_bootstrap], "topic": "t-placement", "consumer_group": f"g-{uuid.uuid4().hex[:6]}",
            "downstream_processors": PROCESSORS, **extra}
    return client.post("/consumers/", json=body)


def test_placement_labels_are_validated_and_stored_as_a_map(client, kafka_bootstrap):
    created = _consumer(client, kafka_bootstrap, placement=["zone=a", "disk=ssd"])
    assert created.status_code == 201, created.json
    assert client.get(f"/consumers/{created.json['id']}/").json["placement"] == {"zone": "a", "disk": "ssd"}
    as_map = _consumer(client, kafka_bootstrap, placement={"zone": "b"})
    assert as_map.status_code == 201 and as_map.json["placement"] == {"zone": "b"}
    for bad in (["zone"], {"zone": 5}, "zone=a", ["zone=a", "zone=b"], {"bad key!": "x"}):
        refused = _consumer(client, kafka_bootstrap, placement=bad)
        assert refused.status_code == 422, (bad, refused.json)
        assert "placement" in refused.json["errors"]["json"], refused.json


def test_supervisors_lists_each_supervisors_slots_and_the_status_shows_the_epoch(cluster, client, topic_factory):
    topic = topic_factory(partitions=1)
    sids = [cluster.start("api-a", KCM_SUPERVISOR_LABELS="zone=a"), cluster.start("api-b")]
    cluster.wait_registered(sids)
    pinned = cluster.create_consumers(topic, 2, placement={"zone": "a"})
    cluster.wait_running()

    def listed():
        found = {s["id"]: s for s in client.get("/supervisors/").json}
        return found if set(sids) <= set(found) and len(found[sids[0]]["slots"]) == 2 else None
    found = wait_for(listed, timeout=30, message="both slots on the zone=a supervisor")
    assert found[sids[0]]["labels"] == {"zone": "a"} and found[sids[1]]["slots"] == []
    assert {s["consumer_id"] for s in found[sids[0]]["slots"]} == set(pinned)
    assert all(s["epoch"] >= 1 and s["state"] == "RUNNING" for s in found[sids[0]]["slots"])
    replica = client.get(f"/consumers/{pinned[0]}/status/").json["replicas"][0]
    assert replica["supervisor_id"] == sids[0] and replica["host"] and replica["epoch"] >= 1


def test_placement_shows_in_the_list_is_versioned_and_a_change_restarts_no_worker(client, kafka_bootstrap):
    created = _consumer(client, kafka_bootstrap, placement={"zone": "a"}).json
    cid = created["id"]
    listed = [c for c in client.get("/consumers/?page_size=100").json if c["id"] == cid]
    assert listed and listed[0]["placement"] == {"zone": "a"}
    assert client.post(f"/consumers/{cid}/start/").status_code in (200, 202)
    generation = client.get(f"/consumers/{cid}/").json["generation"]
    patched = client.patch(f"/consumers/{cid}/", json={"placement": {"zone": "b"}})
    assert patched.status_code == 200, patched.json
    # the supervisors move the slot to a matching host; the worker's spec did not change, so no new generation
    assert patched.json["generation"] == generation and patched.json["placement"] == {"zone": "b"}
    versions = client.get(f"/consumers/{cid}/versions/").json
    assert versions[0]["config"]["placement"] == {"zone": "b"}
    diff = client.get(f"/consumers/{cid}/versions/{versions[0]['version']}/diff/",
                      query_string={"against": versions[1]["version"]}).json
    assert "placement" in str(diff), diff
