"""The dead-letter API over real PostgreSQL, Redis (rq) and a database_sync poison row; plugin/422 checks."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import pytest
from rq import Queue, SimpleWorker
from rq.job import Job

from api.context import EXTENSION
from processors.base import Record
from processors.database_target import target_ddl
from processors.pipeline import Pipeline
from schema import keys
from schema.spec import ProcessorSpec
from tests.integration.api.conftest import make_app

CONSUMER = {"broker_ip": "127.0.0.1", "broker_port": 19092, "topic": "orders", "consumer_group": "billing"}


@pytest.fixture
def client(pg_clean, pg_url, redis_client, redis_test_url, sink_root):
    app = make_app(pg_url, redis_test_url)  # authenticates as the bootstrap admin
    yield app.test_client()
    app.extensions[EXTENSION].close()


@pytest.fixture
def consumer_id(client):
    response = client.post("/consumers/", json=CONSUMER)
    assert response.status_code == 201, response.json
    return response.json["id"]


def _poisoned_processor(client, consumer_id, pg_conn, table, **rq_retry) -> ProcessorSpec:
    """A database_sync processor of the consumer (created through the API) whose table refuses POISON rows."""
    with pg_conn.cursor() as cur:
        cur.execute(target_ddl(f'"{table}"', "text"))
        cur.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT no_poison CHECK (value NOT LIKE \'POISON%\')')
    created = client.post(f"/consumers/{consumer_id}/processors/", json={
        "processor_type": "database_sync", "on_error": "dead_letter",
        "config": {"table": table, "value_format": "text", "max_retries": 0, "dead_letter_max_retries": 0,
                   **rq_retry}})
    assert created.status_code == 201, created.json
    return ProcessorSpec(id=created.json["id"], processor_type="database_sync", on_error="dead_letter",
                         config=created.json["config"])


def _deliver_two_poison_rows(consumer_id, pg_context, specs):
    """What the worker does with offsets 0-9 of which 3 and 7 are poison: each processor dead-letters both."""
    context = dataclasses.replace(pg_context, consumer_id=consumer_id)  # the dead letters are this consumer's
    pipeline = Pipeline.build(specs, consumer_id=consumer_id, context=context)
    pipeline.open()
    pipeline.deliver([Record("orders", 0, i, b"POISON" if i in (3, 7) else b"ok-%d" % i) for i in range(10)])
    pipeline.close()


def _dead_letter_two_rows(client, consumer_id, pg_context, pg_conn, table, **rq_retry) -> ProcessorSpec:
    spec = _poisoned_processor(client, consumer_id, pg_conn, table, **rq_retry)
    _deliver_two_poison_rows(consumer_id, pg_context, [spec])
    return spec


def _offsets(pg_conn, table):
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT "offset" FROM "{table}" ORDER BY 1')
        return [r[0] for r in cur.fetchall()]


def _run_rq(redis_client):
    SimpleWorker([Queue(keys.DEAD_LETTER_QUEUE, connection=redis_client)], connection=redis_client).work(burst=True)


def test_list_replay_one_replay_all_and_delete(client, consumer_id, pg_context, pg_conn, sync_table, redis_client):
    spec = _dead_letter_two_rows(client, consumer_id, pg_context, pg_conn, sync_table)
    assert _offsets(pg_conn, sync_table) == [0, 1, 2, 4, 5, 6, 8, 9]
    _run_rq(redis_client)  # the constraint still holds: both jobs fail and stay in rq's failed registry

    base = f"/consumers/{consumer_id}/dead-letters"
    listed = client.get(f"{base}/")
    assert listed.status_code == 200
    assert json.loads(listed.headers["X-Pagination"])["total"] == 2
    letters = listed.json
    assert {(d["topic"], d["partition"], d["offset"]) for d in letters} == {("orders", 0, 3), ("orders", 0, 7)}
    assert all(d["status"] == "failed" and d["error_class"] == "processors.base.PoisonMessageError"
               and d["processor_id"] == spec.id and d["processor_type"] == "database_sync"
               and d["consumer_id"] == consumer_id and d["attempts"] >= 1 and d["failed_at"] for d in letters)
    assert "Traceback" not in listed.get_data(as_text=True)
    page = client.get(f"{base}/?page=2&page_size=1")
    assert page.status_code == 200 and len(page.json) == 1

    with pg_conn.cursor() as cur:  # fix the cause
        cur.execute(f'ALTER TABLE "{sync_table}" DROP CONSTRAINT no_poison')
    first = letters[0]["id"]
    replayed = client.post(f"{base}/{first}/replay/")
    assert replayed.status_code == 202 and replayed.json["status"] == "queued"
    requested = replayed.json["history"][-1]
    assert requested["event"] == "replay_requested" and "failed job is queued again" in requested["detail"]
    assert datetime.fromisoformat(requested["at"]).utcoffset().total_seconds() == 0
    _run_rq(redis_client)
    assert len(_offsets(pg_conn, sync_table)) == 9
    assert client.get(f"{base}/{first}/").status_code == 404  # delivered: no longer a dead letter

    assert client.post(f"{base}/replay/").json == {"replayed": 1, "refused": []}
    _run_rq(redis_client)
    assert _offsets(pg_conn, sync_table) == list(range(10))
    assert client.get(f"{base}/").json == []


def test_delete_gives_up_a_dead_letter_and_unknown_ids_are_404(client, consumer_id, pg_context, pg_conn,
                                                                sync_table, redis_client):
    _dead_letter_two_rows(client, consumer_id, pg_context, pg_conn, sync_table)
    base = f"/consumers/{consumer_id}/dead-letters"
    letters = client.get(f"{base}/").json
    assert client.delete(f"{base}/{letters[0]['id']}/").status_code == 204
    assert client.delete(f"{base}/{letters[0]['id']}/").status_code == 404
    assert [d["id"] for d in client.get(f"{base}/").json] == [letters[1]["id"]]
    missing = client.post(f"{base}/{'0' * 32}/replay/")
    assert missing.status_code == 404 and set(missing.json) == {"code", "status", "message", "errors"}
    other = "00000000-0000-0000-0000-000000000000"
    assert client.get(f"/consumers/{other}/dead-letters/").status_code == 404
    assert client.post(f"/consumers/{other}/dead-letters/{letters[1]['id']}/replay/").status_code == 404


@pytest.mark.parametrize("path", ["../escape.log", "/etc/passwd", "a/../../b.log", "x\u0000y.log"])
def test_file_sink_path_traversal_is_a_422_through_the_api(client, consumer_id, path):
    response = client.post(f"/consumers/{consumer_id}/processors/",
                           json={"processor_type": "file_sink", "config": {"file_path": path}})
    assert response.status_code == 422
    errors = response.json["errors"]["json"]
    # the API's request guard rejects NUL anywhere in a body (keyed "config.file_path") before the schema runs
    assert "file_path" in errors.get("config", {}) or "config.file_path" in errors


def test_retry_keys_are_accepted_in_any_processor_config(client, consumer_id, tmp_path):
    response = client.post(f"/consumers/{consumer_id}/processors/", json={
        "processor_type": "test_collector", "on_error": "dead_letter",
        "config": {"path": str(tmp_path / "x"), "max_retries": 3, "dead_letter_retry_intervals": [5, 30]}})
    assert response.status_code == 201, response.json
    bad = client.post(f"/consumers/{consumer_id}/processors/", json={
        "processor_type": "file_sink", "config": {"file_path": "ok.log", "max_retries": "many"}})
    assert bad.status_code == 422 and "max_retries" in bad.json["errors"]["json"]["config"]


def test_processor_types_lists_the_builtins_and_the_plugin(client):
    names = {t["name"] for t in client.get("/processor-types/").json}
    assert {"file_sink", "database_sync", "kafka_forward", "test_collector"} <= names


def test_replay_runs_a_scheduled_retry_now(client, consumer_id, pg_context, pg_conn, sync_table, redis_client):
    _dead_letter_two_rows(client, consumer_id, pg_context, pg_conn, sync_table, dead_letter_max_retries=2,
                          dead_letter_retry_intervals=[3600])
    _run_rq(redis_client)  # first attempts fail; rq schedules the retries an hour later
    base = f"/consumers/{consumer_id}/dead-letters"
    letters = client.get(f"{base}/").json
    assert {d["status"] for d in letters} == {"scheduled"}
    with pg_conn.cursor() as cur:
        cur.execute(f'ALTER TABLE "{sync_table}" DROP CONSTRAINT no_poison')
    replayed = client.post(f"{base}/{letters[0]['id']}/replay/").json
    assert replayed["status"] == "queued" and "scheduled retry runs now" in replayed["history"][-1]["detail"]
    _run_rq(redis_client)
    assert len(_offsets(pg_conn, sync_table)) == 9
    assert [d["id"] for d in client.get(f"{base}/").json] == [letters[1]["id"]]


def test_deleting_the_consumer_purges_its_dead_letters_from_rq(client, consumer_id, pg_context, pg_conn,
                                                               sync_table, redis_client):
    _dead_letter_two_rows(client, consumer_id, pg_context, pg_conn, sync_table)
    index = keys.dead_letter_index(consumer_id)
    job_ids = [raw.decode() for raw in redis_client.zrange(index, 0, -1)]
    assert len(job_ids) == 2

    assert client.delete(f"/consumers/{consumer_id}").status_code == 204

    assert not redis_client.exists(index)
    assert not any(Job.exists(job_id, connection=redis_client) for job_id in job_ids)
    assert Queue(keys.DEAD_LETTER_QUEUE, connection=redis_client).count == 0


def test_a_deleted_processors_dead_letters_are_refused_with_409_and_replay_all_reports_them(
        client, consumer_id, pg_context, pg_conn, sync_table, redis_client):
    kept = _poisoned_processor(client, consumer_id, pg_conn, sync_table)
    gone_table = f"{sync_table}_gone"
    try:
        gone = _poisoned_processor(client, consumer_id, pg_conn, gone_table)
        _deliver_two_poison_rows(consumer_id, pg_context, [kept, gone])
        _run_rq(redis_client)  # every job fails: both tables still refuse POISON
        assert client.delete(f"/consumers/{consumer_id}/processors/{gone.id}/").status_code == 204
    finally:
        with pg_conn.cursor() as cur:
            cur.execute(f'DROP TABLE IF EXISTS "{gone_table}"')

    base = f"/consumers/{consumer_id}/dead-letters"
    letters = client.get(f"{base}/").json
    orphans = {d["id"] for d in letters if d["processor_id"] == gone.id}
    assert len(letters) == 4 and len(orphans) == 2
    orphan = sorted(orphans)[0]
    refused = client.post(f"{base}/{orphan}/replay/")
    assert refused.status_code == 409
    assert set(refused.json) == {"code", "status", "message", "errors"}
    assert gone.id in refused.json["message"] and "no longer in consumer" in refused.json["message"]
    assert client.get(f"{base}/{orphan}/").json["status"] == "failed"  # left as it was, not requeued
    assert Queue(keys.DEAD_LETTER_QUEUE, connection=redis_client).count == 0

    with pg_conn.cursor() as cur:  # fix the cause of the kept processor's failures
        cur.execute(f'ALTER TABLE "{sync_table}" DROP CONSTRAINT no_poison')
    tally = client.post(f"{base}/replay/")
    assert tally.status_code == 202
    assert tally.json["replayed"] == 2
    assert {r["id"] for r in tally.json["refused"]} == orphans
    assert all(gone.id in r["reason"] for r in tally.json["refused"])
    _run_rq(redis_client)
    assert _offsets(pg_conn, sync_table) == list(range(10))
    assert {d["id"] for d in client.get(f"{base}/").json} == orphans  # only the refused ones are left
    assert client.delete(f"{base}/{orphan}/").status_code == 204  # what the 409 tells the user to do
