"""The design document's body, end to end on kcm's embedded SQLite state database (the ``make run`` default):
created over the API, started, run by a real supervisor and worker; the file sink gets the lines and the
default ``kcm_messages`` table in the same SQLite file gets the rows, once each even when redelivered."""
from __future__ import annotations

import os
import sqlite3
import uuid

import pytest

from schema.db import make_engine
from tests.integration.runtime.conftest import FAST, Runtime
from tests.support.kafka import produce, wait_for

MESSAGES = 300


@pytest.fixture
def sqlite_runtime(sqlite_url, redis_client, redis_test_url, kafka_bootstrap, tmp_path):
    sink = tmp_path / "sink"
    sink.mkdir()
    env = {**os.environ, **FAST, "KCM_DATABASE_URL": sqlite_url, "KCM_REDIS_URL": redis_test_url,
           "KCM_FILE_SINK_ROOT": str(sink), "KCM_SUPERVISOR_ID": f"test-{uuid.uuid4().hex[:6]}"}
    engine = make_engine(sqlite_url)
    runtime = Runtime(pg_engine=engine, redis_client=redis_client, kafka_bootstrap=kafka_bootstrap,
                      tmp_path=tmp_path, env=env)
    yield runtime
    runtime.cleanup()
    engine.dispose()


@pytest.fixture
def api(sqlite_runtime, sqlite_url, redis_test_url):
    """The API over the same SQLite file and sink root as the supervisor (the API tests' app, credentials and all)."""
    from api.context import EXTENSION
    from tests.integration.api.conftest import make_app

    app = make_app(sqlite_url, redis_test_url, file_sink_root=sqlite_runtime.env["KCM_FILE_SINK_ROOT"])
    yield app.test_client()
    app.extensions[EXTENSION].close()


def _rows(sqlite_url: str) -> list[tuple[int, int, bytes]]:
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=10) as conn:
        try:
            return conn.execute('SELECT partition, "offset", value FROM kcm_messages ORDER BY 1, 2').fetchall()
        except sqlite3.OperationalError as exc:  # not created until the worker opens the sink
            if "no such table" in str(exc):
                return []
            raise


def test_the_design_document_body_delivers_to_the_file_and_to_kcm_messages_on_sqlite(
        api, sqlite_runtime, sqlite_url, topic_factory, tmp_path):
    topic = topic_factory(partitions=2)
    host, _, port = sqlite_runtime.bootstrap.rpartition(":")
    body = {"broker_ip": host, "broker_port": int(port), "topic": topic, "consumer_group": "g1", "client_id": "c1",
            "downstream_processors": [
                {"processor_type": "file_sink", "config": {"file_path": "orders.log"}},
                {"processor_type": "database_sync", "config": {}}]}
    created = api.post("/consumers/", json=body)
    assert created.status_code == 201, created.json
    cid = created.json["id"]
    sqlite_runtime.start_supervisor()
    assert api.post(f"/consumers/{cid}/start/").status_code in (200, 202)
    first_pid = sqlite_runtime.worker_pid(cid)

    produce(sqlite_runtime.bootstrap, topic, MESSAGES, value_fn=lambda i: b"order-%d" % i)
    sink_file = tmp_path / "sink" / "orders.log"
    expected_values = sorted(b"order-%d" % i for i in range(MESSAGES))

    def file_lines():
        return sink_file.read_bytes().splitlines() if sink_file.exists() else []

    wait_for(lambda: len(file_lines()) >= MESSAGES, timeout=60, message=f"{MESSAGES} lines in {sink_file}")
    wait_for(lambda: len(_rows(sqlite_url)) >= MESSAGES, timeout=30, message=f"{MESSAGES} rows in kcm_messages")
    assert sorted(file_lines()) == expected_values
    rows = _rows(sqlite_url)
    assert sorted(value for _p, _o, value in rows) == expected_values
    assert len({(p, o) for p, o, _v in rows}) == MESSAGES

    # the same messages again: a new group reads the topic from the start (at-least-once redelivery)
    assert api.post(f"/consumers/{cid}/stop/").status_code in (200, 202)
    sqlite_runtime.wait_state(cid, "STOPPED")
    assert api.patch(f"/consumers/{cid}/", json={"consumer_group": "g1-again"}).status_code == 200
    assert api.post(f"/consumers/{cid}/start/").status_code in (200, 202)

    def redelivered():  # the new worker reports a message only after every processor flushed its batch
        body = api.get(f"/consumers/{cid}/status/").json
        replica = body["replicas"][0] if body["replicas"] else {}
        fresh = replica.get("pid") not in (None, first_pid)
        return body if body["status"] == "ACTIVE" and fresh and replica["messages"] >= MESSAGES else None

    wait_for(redelivered, timeout=60, message=f"{MESSAGES} messages delivered again by a new worker")
    assert sorted(file_lines()) == sorted(expected_values * 2)  # the file sink appends: at-least-once
    rows = _rows(sqlite_url)
    assert len(rows) == MESSAGES and sorted(value for _p, _o, value in rows) == expected_values  # no duplicate
