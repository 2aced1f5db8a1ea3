"""SCRAM-SHA-512 end to end on the local stack's SASL_PLAINTEXT listener: the API (the Procfile's web command)
stores a consumer whose password is ``${env:KCM_SECRET_KAFKA_PASSWORD}``, a real supervisor's worker consumes
with it; a wrong password (another ``KCM_SECRET_...`` variable) is FATAL with ``KafkaAuthenticationFailed``.
Neither password appears in any API response, any process's log, any Redis value or the audit table."""
from __future__ import annotations

import json
import os
import secrets as token_source
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.integration.deploy.conftest import free_port
from tests.integration.runtime.conftest import FAST
from tests.support.kafka import produce, wait_for

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
WRONG_PASSWORD = "wrong-" + token_source.token_hex(12)


class Api:
    """HTTP calls to a live server; every response body is kept for the final grep."""

    def __init__(self, base: str, token: str):
        self.base, self.token, self.bodies = base, token, []

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", **({"Content-Type": "application/json"} if data else {})}
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                status, raw = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read().decode()
        self.bodies.append(raw)
        return status, (json.loads(raw) if raw.strip().startswith(("{", "[")) else {})


def spawn(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.fixture
def stack(scram, pg_url, pg_clean, redis_client, redis_test_url, tmp_path):
    token = "kcm_" + token_source.token_urlsafe(32)
    port = free_port()
    env = {**os.environ, **FAST, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", "PORT": str(port),
           "WEB_CONCURRENCY": "1", "KCM_DATABASE_URL": pg_url, "KCM_REDIS_URL": redis_test_url,
           "KCM_BOOTSTRAP_ADMIN_TOKEN": token, "KCM_SUPERVISOR_ID": f"scram-{uuid.uuid4().hex[:6]}",
           "KCM_SECRET_KAFKA_PASSWORD": scram["password"], "KCM_SECRET_KAFKA_WRONG_PASSWORD": WRONG_PASSWORD,
           "PYTHONUNBUFFERED": "1"}
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ": " in line)
    procs = [spawn(shlex.split(procfile["web"]), env, tmp_path / "web.log"),
             spawn([sys.executable, "-m", "supervisor"], env, tmp_path / "supervisor.log")]
    api = Api(f"http://127.0.0.1:{port}", token)
    try:
        wait_for(lambda: _answers(api), timeout=60, message="the API (Procfile web line) answering")
        yield api, tmp_path
    finally:
        _stop(procs)


def _stop(procs) -> None:
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _answers(api: Api) -> bool:
    try:
        return api.call("GET", "/consumers/")[0] == 200
    except OSError:
        return False


def _consumer(scram, topic: str, password_reference: str, out: Path) -> dict:
    return {"bootstrap_servers": [scram["bootstrap"]], "topic": topic, "consumer_group": f"kcm-scram-{topic}",
            "security": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                         "sasl.username": scram["user"], "sasl.password": password_reference},
            "downstream_processors": [{"processor_type": "test_collector", "config": {"path": str(out)}}]}


def _redis_dump(client) -> str:
    values = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        reader = {"string": client.get, "hash": client.hgetall, "list": lambda k: client.lrange(k, 0, -1),
                  "set": client.smembers, "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
                  "stream": lambda k: client.xrange(k, "-", "+")}.get(kind)
        values.append(f"{key!r} {reader(key) if reader else kind!r}")
    return "\n".join(values)


def test_scram_consumes_a_wrong_password_is_fatal_and_no_password_is_shown_anywhere(
        stack, scram, kafka_bootstrap, topic_factory, redis_client, pg_engine):
    api, tmp_path = stack
    topic = topic_factory(partitions=2)
    out = tmp_path / "collected.txt"
    status, good = api.call("POST", "/consumers/", _consumer(scram, topic, "${env:KCM_SECRET_KAFKA_PASSWORD}", out))
    assert status == 201, good
    assert api.call("POST", f"/consumers/{good['id']}/start/")[0] == 200
    produce(kafka_bootstrap, topic, 200)
    wait_for(lambda: out.exists() and len(out.read_bytes().splitlines()) >= 200, timeout=60,
             message="200 messages consumed through the SCRAM listener")
    seen = []

    def active():
        seen.append(api.call("GET", f"/consumers/{good['id']}/status/")[1])
        return seen[-1].get("status") == "ACTIVE"

    wait_for(active, timeout=30, message="the consumer ACTIVE")

    status, bad = api.call("POST", "/consumers/", _consumer(scram, topic_factory(), "${env:KCM_SECRET_KAFKA_WRONG_PASSWORD}",
                                                            tmp_path / "never.txt"))
    assert status == 201, bad
    assert api.call("POST", f"/consumers/{bad['id']}/start/")[0] == 200

    def fatal():
        body = api.call("GET", f"/consumers/{bad['id']}/status/")[1]
        seen.append(body)
        replica = (body.get("replicas") or [{}])[0]
        return replica.get("state") == "FATAL" and "KafkaAuthenticationFailed" in (replica.get("last_error") or "")

    wait_for(fatal, timeout=60, message="the wrong password FATAL with KafkaAuthenticationFailed")
    assert seen[-1]["replicas"][0].get("restarts") in (0, None)  # a configuration error: never restarted

    logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))
    assert "WorkerConsuming" in logs and "KafkaAuthenticationFailed" in logs  # the workers' output is there
    with pg_engine.connect() as conn:
        audit = "\n".join(str(tuple(row)) for row in conn.execute(sa.text("SELECT * FROM audit_events")))
    assert "consumer.create" in audit
    for password in (scram["password"], WRONG_PASSWORD):
        for where, text in (("an API response", "\n".join(api.bodies)), ("a log", logs),
                            ("Redis", _redis_dump(redis_client)), ("the audit table", audit)):
            assert password not in text, f"a password is in {where}"
