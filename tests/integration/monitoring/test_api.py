"""The monitoring endpoints over the real services: status carries the lag monitor's lag and health,
/healthz and /readyz (503 per check), /supervisors/, and /metrics (roles, promtool-valid, deleted consumers go)."""
from __future__ import annotations

import shutil
import subprocess
import uuid

from schema import keys
from schema.models import Consumer
from tests.integration.api.conftest import closed_port_url, make_app
from tests.integration.monitoring.conftest import commit, now_ms, produce_at
from tests.support.kafka import wait_for


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is not installed: apt-get install -y prometheus (.ci/run installs it)"
    return path


def test_status_shows_lag_and_health_from_the_lag_monitor(runtime, monitor, client, topic_factory,
                                                          kafka_bootstrap):
    topic = topic_factory(partitions=2)
    produce_at(kafka_bootstrap, topic, 1, [now_ms() - 60_000] * 4)
    cid = runtime.create_consumer(topic, running=False)[0]
    before = client.get(f"/consumers/{cid}/status/").json
    assert before["lag"] is None and before["health"]["verdict"] == "UNKNOWN"
    assert "lag monitor is not running" in before["health"]["reason"]

    monitor.start()
    monitor.wait_lag(cid, lambda lag: lag["max_seconds"] is not None and lag["total_messages"] == 4)
    status = client.get(f"/consumers/{cid}/status/")
    assert status.status_code == 200, status.json
    lag, health = status.json["lag"], status.json["health"]
    assert lag["total_messages"] == 4 and 58 < lag["max_seconds"] < 90
    assert [(p["partition"], p["committed"], p["high_watermark"], p["lag_messages"]) for p in lag["partitions"]] \
        == [(0, None, 0, 0), (1, None, 4, 4)]
    assert health["verdict"] == "STOPPED" and health["since"].endswith("+00:00")
    assert "desired state is stopped" in health["reason"]


def test_healthz_and_readyz_answer_without_credentials(app):
    anonymous = app.test_client(token=None)
    assert anonymous.get("/healthz").json == {"status": "alive"}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json["status"] == "ready"
    assert ready.json["checks"]["database"]["ok"] and ready.json["checks"]["redis"]["ok"]
    assert "migrations at head" in ready.json["checks"]["database"]["detail"]


def test_readyz_is_503_naming_redis_when_redis_is_unreachable(pg_clean, pg_url):
    down = make_app(pg_url, closed_port_url())
    try:
        response = down.test_client(token=None).get("/readyz")
        assert response.status_code == 503
        assert set(response.json) == {"code", "status", "message", "errors"}
        assert list(response.json["errors"]) == ["redis"] and "unreachable" in response.json["errors"]["redis"][0]
        assert down.test_client(token=None).get("/healthz").status_code == 200  # alive, just not ready
    finally:
        down.extensions["kcm"].close()


def test_readyz_is_503_when_the_database_is_behind_the_newest_migration(sqlite_url, redis_client, redis_test_url):
    from schema.migrate import downgrade

    downgrade(sqlite_url, "-1")
    behind = make_app(sqlite_url, redis_test_url)
    try:
        response = behind.test_client(token=None).get("/readyz")
        assert response.status_code == 503, response.json
        assert "migrations not at head" in response.json["errors"]["database"][0]
    finally:
        behind.extensions["kcm"].close()


def test_supervisors_lists_the_live_supervisor(runtime, client):
    proc = runtime.start_supervisor()
    sid = runtime.env["KCM_SUPERVISOR_ID"]
    found = wait_for(lambda: [s for s in client.get("/supervisors/").json if s["id"] == sid], timeout=30,
                     message="the supervisor listed")[0]
    assert found["pid"] == proc.pid and found["replicas"] == 0 and found["last_heartbeat"] and found["host"]
    assert client.application.test_client(token=None).get("/supervisors/").status_code == 401
    runtime.cleanup()
    wait_for(lambda: not [s for s in client.get("/supervisors/").json if s["id"] == sid], timeout=30,
             message="the stopped supervisor gone")


def test_metrics_need_the_viewer_role_unless_public(pg_clean, pg_url, redis_client, redis_test_url):
    private = make_app(pg_url, redis_test_url)
    public = make_app(pg_url, redis_test_url, metrics_public=True)
    try:
        assert private.test_client(token=None).get("/metrics").status_code == 401
        assert private.test_client().get("/metrics").status_code == 200
        response = public.test_client(token=None).get("/metrics")
        assert response.status_code == 200 and response.content_type.startswith("text/plain")
    finally:
        private.extensions["kcm"].close()
        public.extensions["kcm"].close()


def test_metrics_carry_lag_health_and_replica_series_pass_promtool_and_go_with_the_consumer(
        runtime, monitor, client, topic_factory, kafka_bootstrap):
    topic = topic_factory(partitions=1)
    produce_at(kafka_bootstrap, topic, 0, [now_ms() - 10_000] * 3)
    cid = runtime.create_consumer(topic, running=True)[0]
    commit(kafka_bootstrap, f"kcm-rt-{topic}", topic, {0: 1})
    monitor.start()
    monitor.wait_lag(cid, lambda lag: lag["partitions"][0]["lag_seconds"] is not None)
    client.get("/healthz")
    text = client.get("/metrics").get_data(as_text=True)
    assert f'kcm_consumer_lag_messages{{consumer_id="{cid}",partition="0",topic="{topic}"}} 2.0' in text
    assert f'kcm_consumer_lag_seconds{{consumer_id="{cid}",partition="0",topic="{topic}"}}' in text
    assert f'kcm_consumer_health{{consumer_id="{cid}",verdict="STOPPED"}} 0.0' in text
    assert f'kcm_replica_state{{consumer_id="{cid}",replica="0",state="UNKNOWN"}} 1.0' in text
    assert f'kcm_dead_letters{{consumer_id="{cid}"}} 0.0' in text
    assert "kcm_lag_monitor_up 1.0" in text and "kcm_redis_up 1.0" in text
    assert 'kcm_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    checked = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    with runtime.sessions() as session, session.begin():  # deleted as the API deletes it
        session.delete(session.get(Consumer, uuid.UUID(cid)))
    text = client.get("/metrics").get_data(as_text=True)
    assert cid not in text
    wait_for(lambda: not runtime.redis.exists(keys.lag_key(cid)), timeout=20, message="lag keys gone")

