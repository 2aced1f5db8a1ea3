"""A dead letter of a step, replayed through the API, goes through the step and the processors after it.

The consumer and its processors are made through the API over the real PostgreSQL; the worker's pipeline
(built from the API's processor list, with the worker's context) dead-letters the message into the real Redis
(rq); the replay is requested through the API and run by a real ``SimpleWorker`` reading kcm's database, into a
real file sink.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
from rq import Queue, SimpleWorker
from rq.job import Job

from api.context import EXTENSION
from processors.base import Record
from processors.pipeline import Pipeline
from schema import keys
from schema.spec import ProcessorSpec
from tests.integration.api.conftest import make_app

CONSUMER = {"broker_ip": "127.0.0.1", "broker_port": 19092, "topic": "orders", "consumer_group": "replay-steps"}
NO_RETRIES = {"max_retries": 0, "dead_letter_max_retries": 0}


@pytest.fixture
def client(pg_clean, pg_url, redis_client, redis_test_url, sink_root):
    app = make_app(pg_url, redis_test_url)  # authenticates as the bootstrap admin
    yield app.test_client()
    app.extensions[EXTENSION].close()


def _pipeline_of(client, consumer_id: str, step: dict) -> list[dict]:
    """``step`` (on_error dead_letter) at position 0, a json-lines file_sink after it; the API's processor list."""
    for body in ({**step, "on_error": "dead_letter", "position": 0},
                 {"processor_type": "file_sink", "position": 1,
                  "config": {"file_path": "orders.jsonl", "format": "json"}}):
        created = client.post(f"/consumers/{consumer_id}/processors/", json=body)
        assert created.status_code == 201, created.json
    listed = client.get(f"/consumers/{consumer_id}/processors/")
    assert listed.status_code == 200, listed.json
    return listed.json


def _deliver_as_the_worker(consumer_id: str, pg_context, processors: list[dict], values: list[bytes]) -> None:
    context = dataclasses.replace(pg_context, consumer_id=consumer_id)  # the dead letters are this consumer's
    specs = [ProcessorSpec(id=p["id"], processor_type=p["processor_type"], config=p["config"], on_error=p["on_error"])
             for p in processors]
    pipeline = Pipeline.build(specs, consumer_id=consumer_id, context=context)
    pipeline.open()
    try:
        pipeline.deliver([Record("orders", 0, offset, value) for offset, value in enumerate(values)])
    finally:
        pipeline.close()


def _run_rq(redis_client) -> None:
    SimpleWorker([Queue(keys.DEAD_LETTER_QUEUE, connection=redis_client)], connection=redis_client).work(burst=True)


def _sunk(sink_root) -> list[tuple[int, dict]]:
    out = sink_root / "orders.jsonl"
    lines = out.read_bytes().splitlines() if out.exists() else []
    return [(entry["offset"], json.loads(entry["value"])) for entry in map(json.loads, lines)]


def _only_dead_letter(client, consumer_id: str) -> dict:
    listed = client.get(f"/consumers/{consumer_id}/dead-letters/")
    assert listed.status_code == 200, listed.json
    (letter,) = listed.json
    return letter


def test_a_json_transform_dead_letter_replayed_after_its_cast_was_fixed_reaches_the_sink_transformed_once(
        client, pg_context, redis_client, sink_root):
    consumer_id = client.post("/consumers/", json=CONSUMER).json["id"]
    step = {"processor_type": "json_transform",
            "config": {"rename": {"id": "order_id"}, "cast": {"qty": "int"}, **NO_RETRIES}}
    processors = _pipeline_of(client, consumer_id, step)
    step_id = processors[0]["id"]
    _deliver_as_the_worker(consumer_id, pg_context, processors,
                           [b'{"id": 0, "qty": "2"}', b'{"id": 1, "qty": "a few"}', b'{"id": 2, "qty": 5}'])
    assert _sunk(sink_root) == [(0, {"order_id": 0, "qty": 2}), (2, {"order_id": 2, "qty": 5})]
    letter = _only_dead_letter(client, consumer_id)
    assert (letter["processor_id"], letter["offset"]) == (step_id, 1)

    _run_rq(redis_client)  # the cast still cannot be made: the job fails through the step, not "is a step"
    history = Job.fetch(letter["id"], connection=redis_client).meta["dead_letter"]["history"]
    assert [e["event"] for e in history] == ["dead_lettered", "delivery_failed"]
    assert "cannot be cast to int" in history[-1]["detail"] and "is a step" not in history[-1]["detail"]
    assert len(_sunk(sink_root)) == 2

    fixed = client.patch(f"/consumers/{consumer_id}/processors/{step_id}/", json={
        "config": {"rename": {"id": "order_id"}, "cast": {"qty": "str"}, **NO_RETRIES}})
    assert fixed.status_code == 200, fixed.json
    replayed = client.post(f"/consumers/{consumer_id}/dead-letters/{letter['id']}/replay/")
    assert replayed.status_code == 202, replayed.json
    _run_rq(redis_client)

    sunk = _sunk(sink_root)
    assert [entry for entry in sunk if entry[0] == 1] == [(1, {"order_id": 1, "qty": "a few"})]  # once, transformed
    assert len(sunk) == 3
    assert client.get(f"/consumers/{consumer_id}/dead-letters/").json == []
    history = Job.fetch(letter["id"], connection=redis_client).meta["dead_letter"]["history"]
    assert [e["event"] for e in history] == ["dead_lettered", "delivery_failed", "replay_requested", "delivered"]
    assert f"through step {step_id} (json_transform) and the 1 processor(s) after it" in history[-1]["detail"]
    assert "dropped" not in history[-1]["detail"]


def test_a_filter_dead_letter_that_its_fixed_condition_drops_counts_as_replayed(
        client, pg_context, redis_client, sink_root):
    consumer_id = client.post("/consumers/", json=CONSUMER).json["id"]
    step = {"processor_type": "filter", "config": {"condition": "value.total >= 100", **NO_RETRIES}}
    processors = _pipeline_of(client, consumer_id, step)
    step_id = processors[0]["id"]
    _deliver_as_the_worker(consumer_id, pg_context, processors, [b'{"total": 150}', b"not json", b'{"total": 5}'])
    assert _sunk(sink_root) == [(0, {"total": 150})]
    letter = _only_dead_letter(client, consumer_id)
    assert (letter["processor_id"], letter["offset"]) == (step_id, 1)

    # the operator stops reading value (so the non-JSON message no longer fails) and keeps only web orders
    fixed = client.patch(f"/consumers/{consumer_id}/processors/{step_id}/", json={
        "config": {"condition": "headers.source == 'web'", **NO_RETRIES}})
    assert fixed.status_code == 200, fixed.json
    assert client.post(f"/consumers/{consumer_id}/dead-letters/{letter['id']}/replay/").status_code == 202
    _run_rq(redis_client)

    assert _sunk(sink_root) == [(0, {"total": 150})]  # dropped by the step: nothing more reached the sink
    job = Job.fetch(letter["id"], connection=redis_client)
    assert job.get_status().value == "finished"
    assert client.get(f"/consumers/{consumer_id}/dead-letters/").json == []
    history = job.meta["dead_letter"]["history"]
    assert [e["event"] for e in history] == ["dead_lettered", "replay_requested", "delivered"]
    assert history[-1]["detail"].endswith(f"dropped by step {step_id} (filter), which counts as replayed")
