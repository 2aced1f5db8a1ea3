"""Pause and resume end to end: the API, a real supervisor, real workers on the real Kafka.

Paused mid-stream, the sink stops growing within a second, the group does not rebalance (the worker's pid and
assignment count, and the group's member ids, are unchanged), the status says PAUSED, and the resume continues
with no gap and no duplicate. A paused consumer stays paused across a kill -9 of its worker and a restart of
the supervisor."""
from __future__ import annotations

import os
import signal
import time

import pytest
from confluent_kafka import ConsumerGroupState

from api.context import EXTENSION
from schema.settings import Settings
from tests.support.kafka import high_watermarks, produce, wait_for

SLOW = {"KCM_BATCH_SIZE": "20"}  # small batches (each delayed by the processor): a stream that lasts seconds
DELAY = {"delay_ms": 40}


@pytest.fixture
def api(runtime, pg_url, redis_test_url):
    from api import create_app
    from tests.integration.api.conftest import ADMIN_TOKEN, AuthenticatedClient

    app = create_app(Settings.from_env({**runtime.env, "KCM_DATABASE_URL": pg_url, "KCM_REDIS_URL": redis_test_url,
                                        "KCM_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN}))
    app.test_client_class = AuthenticatedClient
    yield app.test_client()
    app.extensions[EXTENSION].close()


def create(api, runtime, topic, tmp_path, *, replicas: int = 1):
    out = tmp_path / "collected.txt"
    response = api.post("/consumers/", json={
        "bootstrap_servers": [runtime.bootstrap], "topic": topic, "consumer_group": f"kcm-rt-{topic}",
        "replicas": replicas,
        "downstream_processors": [{"processor_type": "test_collector", "config": {"path": str(out), **DELAY}}]})
    assert response.status_code == 201, response.json
    return response.json["id"], out


def member_ids(kafka_admin, group: str) -> set[str]:
    description = kafka_admin.describe_consumer_groups([group])[group].result(10)
    assert description.state == ConsumerGroupState.STABLE, description.state
    return {member.member_id for member in description.members}


def paused_heartbeat(runtime, cid: str, pid: int) -> dict:
    """The heartbeat of ``pid`` once it says paused and holds partitions."""
    def check():
        beat = runtime.heartbeat(cid)
        return beat if beat.get("pid") == str(pid) and beat.get("paused") == "1" and beat.get("partitions") not in (
            None, "[]") else None
    return wait_for(check, timeout=30, interval=0.05, message=f"worker {pid} paused, holding partitions "
                                                              f"(now {runtime.heartbeat(cid)})")


def last_growth_after(runtime, out, since: float, watch: float) -> tuple[float, int]:
    """Watch the sink for ``watch`` seconds; the seconds after ``since`` of its last growth, and its final size."""
    size, grew_at = len(runtime.collected(out)), since
    deadline = time.monotonic() + watch
    while time.monotonic() < deadline:
        now_size = len(runtime.collected(out))
        if now_size != size:
            size, grew_at = now_size, time.monotonic()
        time.sleep(0.02)
    return grew_at - since, size


def assert_exactly_once(runtime, out, topic) -> None:
    delivered = runtime.collected(out)
    expected = {(p, o) for p, high in high_watermarks(runtime.bootstrap, topic).items() for o in range(high)}
    assert len(delivered) == len(set(delivered)), "a message was delivered twice"
    assert set(delivered) == expected, f"missing: {sorted(expected - set(delivered))[:10]}"


def status_of(api, cid: str) -> dict:
    response = api.get(f"/consumers/{cid}/status/")
    assert response.status_code == 200, response.json
    return response.json


def test_pause_mid_stream_stops_the_sink_within_a_second_keeps_the_group_and_resume_loses_and_repeats_nothing(
        api, runtime, topic_factory, kafka_admin, tmp_path):
    topic = topic_factory(partitions=2)
    cid, out = create(api, runtime, topic, tmp_path)
    runtime.start_supervisor(**SLOW)
    assert api.post(f"/consumers/{cid}/start/").status_code == 200
    pid = runtime.worker_pid(cid)
    produce(runtime.bootstrap, topic, 3000)
    wait_for(lambda: len(runtime.collected(out)) >= 300, timeout=30, message="the stream under way")
    beat = wait_for(lambda: (b := runtime.heartbeat(cid)).get("partitions", "[]") != "[]" and b, timeout=10,
                    message="partitions held")
    members = member_ids(kafka_admin, f"kcm-rt-{topic}")

    asked = time.monotonic()
    response = api.post(f"/consumers/{cid}/pause/")
    assert response.status_code == 200 and response.json["generation"] == 2, response.json
    grew, size_paused = last_growth_after(runtime, out, asked, watch=3.0)
    assert grew <= 1.0, f"the sink still grew {grew:.2f} s after the pause"
    assert size_paused < 3000, "the stream was over before the pause: nothing was proven"
    paused = paused_heartbeat(runtime, cid, pid)
    assert paused["assignments"] == beat["assignments"] and paused["generation"] == "2"

    body = wait_for(lambda: (s := status_of(api, cid))["state"] == "PAUSED" and s, timeout=10,
                    message="status PAUSED")
    assert body["replicas"][0]["state"] == "PAUSED" and body["replicas"][0]["pid"] == pid
    assert "paused" in body["replicas"][0]["reason"]
    assert body["status"] == "ACTIVE" and body["desired_state"] == "paused"

    assert api.post(f"/consumers/{cid}/resume/").json["generation"] == 2
    wait_for(lambda: len(runtime.collected(out)) >= 3000, timeout=60, message="the stream finished after resume")
    assert_exactly_once(runtime, out, topic)
    after = runtime.heartbeat(cid)
    assert after["pid"] == str(pid) and after["paused"] == "0"
    assert after["assignments"] == beat["assignments"], "a rebalance happened during pause/resume"
    assert member_ids(kafka_admin, f"kcm-rt-{topic}") == members
    assert runtime.state(cid)["restarts"] == "0"
    assert wait_for(lambda: (s := status_of(api, cid))["state"] == "RUNNING" and s, timeout=10,
                    message="RUNNING again")


def test_a_paused_consumer_stays_paused_across_kill_9_of_its_worker_and_a_supervisor_restart(
        api, runtime, topic_factory, tmp_path):
    topic = topic_factory(partitions=2)
    cid, out = create(api, runtime, topic, tmp_path)
    supervisor = runtime.start_supervisor(**SLOW)
    api.post(f"/consumers/{cid}/start/")
    pid = runtime.worker_pid(cid)
    produce(runtime.bootstrap, topic, 2000)
    wait_for(lambda: len(runtime.collected(out)) >= 200, timeout=30, message="the stream under way")
    assert api.post(f"/consumers/{cid}/pause/").status_code == 200
    paused_heartbeat(runtime, cid, pid)
    held = len(runtime.collected(out))

    os.kill(pid, signal.SIGKILL)  # the respawned worker starts paused from its spec
    respawned = wait_for(lambda: (s := runtime.state(cid)).get("state") == "RUNNING" and s.get("pid")
                         and int(s["pid"]) != pid and int(s["pid"]), timeout=30, message="a new worker")
    paused_heartbeat(runtime, cid, respawned)
    assert len(runtime.collected(out)) == held
    assert status_of(api, cid)["state"] == "PAUSED"

    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(20) == 0
    runtime.start_supervisor(**SLOW)
    restarted = wait_for(lambda: (s := runtime.state(cid)).get("state") == "RUNNING" and s.get("pid")
                         and int(s["pid"]) not in (pid, respawned) and int(s["pid"]), timeout=30,
                         message="a worker of the new supervisor")
    paused_heartbeat(runtime, cid, restarted)
    _grew, size = last_growth_after(runtime, out, time.monotonic(), watch=1.0)
    assert size == held, "a paused consumer consumed after a restart"
    assert wait_for(lambda: status_of(api, cid)["state"] == "PAUSED", timeout=10, message="status PAUSED")

    api.post(f"/consumers/{cid}/resume/")
    wait_for(lambda: len(runtime.collected(out)) >= 2000, timeout=60, message="the stream finished after resume")
    assert_exactly_once(runtime, out, topic)  # the pause committed what was delivered: the restarts repeat nothing
