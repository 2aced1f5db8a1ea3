"""http_sink against a real receiver on 127.0.0.1 (tests/support/http_receiver.py): the address policy at the
API, retries honouring Retry-After, 400s dead-lettered one by one, and end to end through a real supervisor a
30 s outage that loses nothing."""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
import uuid

import pytest
from rq.job import Job

from api.context import EXTENSION
from processors.base import Record, RetriableError
from processors.http_sink import HttpSinkProcessor
from processors.pipeline import Pipeline
from schema import keys
from schema.spec import ProcessorSpec
from tests.integration.api.conftest import make_app
from tests.support.http_receiver import HttpReceiver
from tests.support.kafka import produce, wait_for

TOKEN_ENV = "KCM_SECRET_TEST_HTTP_TOKEN"
TOKEN = "s3cr3t-token-value"
FAST_RETRIES = {"max_retries": 3, "retry_backoff": 0.05, "retry_backoff_max": 0.2}


@pytest.fixture
def receiver():
    with HttpReceiver() as server:
        yield server


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    return "${env:" + TOKEN_ENV + "}"


def _seq(envelope: dict) -> int:
    return envelope["value"]["seq"]


def _records(offsets, topic="orders"):
    return [Record(topic, 0, o, json.dumps({"seq": o}).encode(), key_=b"k%d" % o) for o in offsets]


def _pipeline(context, receiver, on_error="dead_letter", consumer_id="c-http", **config) -> Pipeline:
    spec = ProcessorSpec(id="hs", processor_type="http_sink", on_error=on_error,
                         config={"url": receiver.url, **FAST_RETRIES, **config})
    pipeline = Pipeline.build([spec], context=dataclasses.replace(context, consumer_id=consumer_id))
    pipeline.open()
    return pipeline


# ------------------------------------------------------------------ config and the address policy at the API
@pytest.fixture
def api(pg_clean, pg_url, redis_client, redis_test_url):
    app = make_app(pg_url, redis_test_url)
    yield app.test_client()
    app.extensions[EXTENSION].close()


def _create(api, config: dict):
    return api.post("/consumers/", json={
        "bootstrap_servers": ["127.0.0.1:19092"], "topic": "orders", "consumer_group": f"g-{uuid.uuid4().hex[:8]}",
        "downstream_processors": [{"processor_type": "http_sink", "config": config, "on_error": "dead_letter"}]})


def _config_errors(response) -> dict:
    assert response.status_code == 422, response.json
    return response.json["errors"]["json"]["downstream_processors"]["0"]["config"]


@pytest.mark.parametrize(("url", "fragment"), [
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata address"),
    ("http://169.254.10.1:8080/", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://[::ffff:169.254.169.254]/", "cloud metadata address"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata host name"),
    ("http://100.100.100.200/", "cloud metadata address"),
    ("ftp://example.com/upload", "Must be an https or http URL"),
    ("http://user:pw@example.com/", "Must not carry credentials"),
    ("not a url", "Must be an https or http URL"),
])
def test_refused_addresses_are_a_422_at_create_time(api, url, fragment):
    errors = _config_errors(_create(api, {"url": url}))
    assert fragment in " ".join(errors["url"]), errors


def test_a_reference_holding_a_metadata_url_is_refused_and_loopback_is_allowed(api, monkeypatch, receiver, token):
    monkeypatch.setenv("KCM_SECRET_TEST_HOOK", "http://169.254.169.254/latest/")
    errors = _config_errors(_create(api, {"url": "${env:KCM_SECRET_TEST_HOOK}"}))
    assert "cloud metadata address" in errors["url"][0] and "169.254" not in errors["url"][0]
    created = _create(api, {"url": receiver.url, "headers": {"Authorization": token}})
    assert created.status_code == 201, created.json
    assert created.json["downstream_processors"][0]["config"]["headers"] == {"Authorization": token}


def test_a_restricted_policy_refuses_hosts_it_does_not_name(pg_clean, pg_url, redis_client, redis_test_url):
    app = make_app(pg_url, redis_test_url, allowed_brokers="hooks.internal,127.0.0.1")  # the consumer's broker too
    try:
        errors = _config_errors(_create(app.test_client(), {"url": "http://10.1.2.3:8080/"}))
        assert "KCM_ALLOWED_BROKERS" in errors["url"][0]
        assert _create(app.test_client(), {"url": "https://hooks.internal/in"}).status_code == 201
    finally:
        app.extensions[EXTENSION].close()


@pytest.mark.parametrize(("config", "field"), [
    ({"headers": {"X Bad": "v"}}, "headers"),
    ({"headers": {"Host": "elsewhere"}}, "headers"),
    ({"headers": {"Authorization": "${env:PATH}"}}, "headers"),
    ({"value_format": "xml"}, "value_format"),
    ({"per_message": "sometimes"}, "per_message"),
    ({"retry_after_max": 1000}, "retry_after_max"),
    ({"colour": "red"}, "colour"),
])
def test_bad_configs_are_422_with_a_message_on_the_field(api, config, field):
    errors = _config_errors(_create(api, {"url": "http://127.0.0.1:9/", **config}))
    assert field in errors and errors[field], errors


# ------------------------------------------------------------------ the pipeline against the real receiver
def test_a_400_for_one_message_of_a_batch_dead_letters_exactly_that_message(context, receiver, redis_client, token):
    receiver.reject(lambda e: _seq(e) == 13)
    pipeline = _pipeline(context, receiver, headers={"Authorization": token})
    pipeline.deliver(_records(range(40)))
    pipeline.close()
    assert sorted(_seq(e) for e in receiver.accepted()) == [i for i in range(40) if i != 13]  # each once
    (job_id,) = redis_client.zrange(keys.dead_letter_index("c-http"), 0, -1)
    letter = Job.fetch(job_id.decode(), connection=redis_client).meta["dead_letter"]
    assert (letter["offset"], letter["error_class"]) == (13, "processors.base.PoisonMessageError")
    assert "400" in letter["error_message"] and "refused offsets [13]" in letter["error_message"]
    assert TOKEN not in json.dumps(letter) and TOKEN_ENV in letter["error_message"]  # the echo is redacted
    assert {r["headers"].get("Authorization") for r in receiver.requests} == {TOKEN}


def test_retry_after_is_waited_out_before_the_next_attempt(context, receiver):
    receiver.fail(429, retry_after=1)
    pipeline = _pipeline(context, receiver, on_error="retry", max_retries=5)
    started = time.monotonic()

    def recover_after_first_refusal():
        wait_for(lambda: receiver.answered(429), timeout=10, message="a 429")
        receiver.recover()

    helper = threading.Thread(target=recover_after_first_refusal)
    helper.start()
    pipeline.deliver(_records(range(5)))
    helper.join()
    pipeline.close()
    refused, accepted = receiver.answered(429), receiver.answered(200)
    assert len(accepted) == 1 and sorted(_seq(e) for e in receiver.accepted()) == list(range(5))
    assert accepted[0]["time"] - refused[-1]["time"] >= 0.95  # not the pipeline's 0.05 s backoff
    assert time.monotonic() - started < 10


def test_interrupt_ends_a_retry_after_wait_at_once(context, receiver):
    receiver.fail(503, retry_after=30)
    sink = HttpSinkProcessor(HttpSinkProcessor.validate_config({"url": receiver.url}), processor_id="hs",
                             context=context)
    sink.open()
    sink.process(_records(range(2)))
    with pytest.raises(RetriableError, match="Retry-After: waiting 30 s") as caught:
        sink.flush()
    assert caught.value.retry_after == 30
    receiver.recover()
    threading.Timer(0.3, sink.interrupt).start()  # what a warm stop does
    started = time.monotonic()
    sink.process(_records(range(2)))
    with pytest.raises(RetriableError, match="stopped while waiting out a Retry-After"):
        sink.flush()
    sink.close()
    assert time.monotonic() - started < 5 and receiver.accepted() == []


def test_per_message_mode_does_not_resend_what_a_failed_attempt_delivered(context, receiver):
    receiver.reject(lambda e: _seq(e) == 6)
    pipeline = _pipeline(context, receiver, per_message=True, on_error="skip")
    pipeline.deliver(_records(range(10)))
    pipeline.close()
    assert [_seq(e) for e in receiver.accepted()] == [0, 1, 2, 3, 4, 5, 7, 8, 9]
    assert pipeline.stats["hs"]["skipped"] == 1
    assert all(r["messages"] == 1 for r in receiver.requests)


def test_a_slow_receiver_times_out_and_is_retried_until_it_answers(context, receiver):
    receiver.slow(1.0)
    pipeline = _pipeline(context, receiver, on_error="retry", read_timeout=0.3, max_retries=20,
                         retry_backoff=0.2, retry_backoff_max=0.5)
    timer = threading.Timer(1.5, receiver.recover)
    timer.start()
    pipeline.deliver(_records(range(3)))
    timer.join()
    pipeline.close()
    assert pipeline.stats["hs"]["retries"] >= 1
    assert {_seq(e) for e in receiver.accepted()} == {0, 1, 2}  # a timed-out request may have arrived too


def test_check_reports_whether_the_url_answers(context, receiver):
    ok = HttpSinkProcessor.check(HttpSinkProcessor.validate_config({"url": receiver.url}), context)
    assert [c.ok for c in ok] == [True] and "answered HEAD with 200" in ok[0].detail
    receiver.fail(503)
    down = HttpSinkProcessor.check(HttpSinkProcessor.validate_config({"url": receiver.url}), context)
    assert [c.ok for c in down] == [False]
    closed = HttpSinkProcessor.check(HttpSinkProcessor.validate_config(
        {"url": "http://127.0.0.1:9/x", "connect_timeout": 1}), context)
    assert [c.ok for c in closed] == [False] and "did not answer" in closed[0].detail


# ------------------------------------------------------------------ end to end through a real supervisor
@pytest.fixture
def runtime(pg_url, pg_engine, pg_clean, redis_client, redis_test_url, kafka_bootstrap, tmp_path, token):
    from tests.integration.runtime.conftest import FAST, Runtime

    env = {**os.environ, **FAST, "KCM_DATABASE_URL": pg_url, "KCM_REDIS_URL": redis_test_url,
           "KCM_SUPERVISOR_ID": f"test-{uuid.uuid4().hex[:6]}", "KCM_BATCH_SIZE": "50"}
    rt = Runtime(pg_engine=pg_engine, redis_client=redis_client, kafka_bootstrap=kafka_bootstrap, tmp_path=tmp_path,
                 env=env)
    yield rt
    rt.cleanup()


OUTAGE_SECONDS = 30
REJECTED = {17, 133}


def test_a_30_s_outage_loses_nothing_and_exactly_the_400s_are_dead_lettered(runtime, receiver, topic_factory, token):
    from api import create_app
    from schema.settings import Settings
    from tests.integration.api.conftest import ADMIN_TOKEN, AuthenticatedClient

    app = create_app(Settings.from_env({**runtime.env, "KCM_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN}))
    app.test_client_class = AuthenticatedClient
    api = app.test_client()
    topic = topic_factory(partitions=2)
    receiver.reject(lambda e: _seq(e) in REJECTED)
    created = api.post("/consumers/", json={
        "bootstrap_servers": [runtime.bootstrap], "topic": topic, "consumer_group": f"kcm-hs-{topic}",
        "downstream_processors": [{"processor_type": "http_sink", "on_error": "dead_letter", "config": {
            "url": receiver.url, "headers": {"Authorization": token}, "read_timeout": 5,
            # retries that outlast the outage: the partitions stay paused and polled, nothing is dead-lettered
            "max_retries": 200, "retry_timeout": 120, "retry_backoff": 0.2, "retry_backoff_max": 2}}]})
    assert created.status_code == 201, created.json
    cid = created.json["id"]
    runtime.start_supervisor(**{TOKEN_ENV: TOKEN})
    assert api.post(f"/consumers/{cid}/start/").status_code in (200, 202)
    runtime.worker_pid(cid)
    seq = lambda i: json.dumps({"seq": i}).encode()  # noqa: E731

    produce(runtime.bootstrap, topic, 100, value_fn=seq)
    wait_for(lambda: len(receiver.accepted()) >= 99, timeout=30, message="99 of the first 100 received")
    receiver.fail(503, retry_after=1)
    outage_began = time.monotonic()
    produce(runtime.bootstrap, topic, 100, value_fn=lambda i: seq(100 + i))
    wait_for(lambda: receiver.answered(503), timeout=20, message="a request during the outage")
    time.sleep(max(0.0, outage_began + OUTAGE_SECONDS - time.monotonic()))  # the outage under test lasts 30 s
    receiver.recover()
    wait_for(lambda: len({_seq(e) for e in receiver.accepted()}) >= 200 - len(REJECTED), timeout=60,
             message="every sequence number after the outage")

    received = [_seq(e) for e in receiver.accepted()]
    assert set(received) == set(range(200)) - REJECTED
    assert runtime.state(cid)["state"] == "RUNNING" and len(receiver.answered(503)) >= 5

    def dead_letters():
        listed = api.get(f"/consumers/{cid}/dead-letters/")
        assert listed.status_code == 200
        return listed.json if len(listed.json) >= len(REJECTED) else None

    letters = wait_for(dead_letters, timeout=20, message="the dead letters over the API")
    assert len(letters) == len(REJECTED) and {_seq(e) for e in receiver.rejected()} == REJECTED
    rejected_coordinates = {(e["partition"], e["offset"]) for e in receiver.rejected()}
    assert {(d["partition"], d["offset"]) for d in letters} == rejected_coordinates
    assert all(d["error_class"] == "processors.base.PoisonMessageError" and "400" in d["error_message"]
               and TOKEN not in d["error_message"] for d in letters)
    api.post(f"/consumers/{cid}/stop/")
    runtime.wait_state(cid, "STOPPED")
    app.extensions[EXTENSION].close()

