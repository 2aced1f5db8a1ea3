"""The API and the runtime together: what a user does over HTTP becomes processes, and comes back as status."""
from __future__ import annotations

import signal

import pytest

from schema.settings import Settings
from tests.support.kafka import produce, wait_for


@pytest.fixture
def api(runtime, pg_url, redis_test_url):
    """The API as deployed: authentication on; the client is the bootstrap admin."""
    from api import create_app
    from tests.integration.api.conftest import ADMIN_TOKEN, AuthenticatedClient

    app = create_app(Settings.from_env({**runtime.env, "KCM_DATABASE_URL": pg_url, "KCM_REDIS_URL": redis_test_url,
                                        "KCM_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN}))
    app.test_client_class = AuthenticatedClient
    return app.test_client()


def test_create_start_scale_while_supervisor_down_and_stop_through_the_api(api, runtime, topic_factory, tmp_path):
    topic = topic_factory(partitions=2)
    out = tmp_path / "collected.txt"
    response = api.post("/consumers/", json={
        "bootstrap_servers": [runtime.bootstrap], "topic": topic, "consumer_group": f"kcm-rt-{topic}",
        "downstream_processors": [{"processor_type": "test_collector", "config": {"path": str(out)}}]})
    assert response.status_code == 201, response.json
    cid = response.json["id"]
    supervisor = runtime.start_supervisor()

    assert api.post(f"/consumers/{cid}/start/").status_code in (200, 202)
    runtime.wait_state(cid, "RUNNING")
    produce(runtime.bootstrap, topic, 200)
    wait_for(lambda: len(set(runtime.collected(out))) >= 200, timeout=20, message="200 collected")

    def api_status():
        body = api.get(f"/consumers/{cid}/status/").json
        replica = body["replicas"][0]
        return body if body["status"] == "ACTIVE" and replica["pid"] and replica["messages"] == 200 else None

    body = wait_for(api_status, timeout=10, message="ACTIVE with 200 messages over the API")
    assert body["state"] == "RUNNING" and body["replicas"][0]["host"]
    assert api.get(f"/consumers/{cid}/").json["status"] == "ACTIVE"

    # scale while the supervisor is down: the command is lost on nobody, the database is the truth
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(15) == 0
    assert api.patch(f"/consumers/{cid}/", json={"replicas": 2}).status_code == 200
    runtime.start_supervisor()
    runtime.wait_state(cid, "RUNNING", 0, timeout=15)
    runtime.wait_state(cid, "RUNNING", 1, timeout=15)
    assert len(runtime.worker_pids()) == 2

    assert api.post(f"/consumers/{cid}/stop/").status_code in (200, 202)
    runtime.wait_state(cid, "STOPPED", 0)
    runtime.wait_state(cid, "STOPPED", 1)
    wait_for(lambda: api.get(f"/consumers/{cid}/").json["status"] == "INACTIVE", timeout=10, message="INACTIVE")
    assert runtime.worker_pids() == []
