"""`gunicorn 'api:create_app()'` (the Procfile's web line) serves the API from the KCM_* environment, with
authentication on: the bootstrap admin token from KCM_BOOTSTRAP_ADMIN_TOKEN works, no token is a 401."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.integration.api.conftest import ADMIN_TOKEN, VALID_CONSUMER

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(url: str, body: dict | None = None, token: str | None = ADMIN_TOKEN) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            raw = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read().decode(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def test_gunicorn_serves_create_app_from_the_environment(sqlite_url, redis_client, redis_test_url):
    port = free_port()
    env = {**os.environ, "KCM_DATABASE_URL": sqlite_url, "KCM_REDIS_URL": redis_test_url,
           "KCM_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "api:create_app()", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, spec = request(f"{base}/openapi.json")
                break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "gunicorn did not start listening in 30 s"
                time.sleep(0.1)
        assert status == 200 and "/consumers/" in spec["paths"]
        status, refused = request(f"{base}/consumers", VALID_CONSUMER, token=None)
        assert status == 401 and refused["code"] == 401
        status, created = request(f"{base}/consumers", VALID_CONSUMER)
        assert status == 201 and created["desired_state"] == "stopped"
        status, listed = request(f"{base}/consumers/")
        assert status == 200 and [c["id"] for c in listed] == [created["id"]]
        status, page = request(f"{base}/docs")
        assert status == 200 and "swagger-ui" in page.lower()
    finally:
        process.terminate()
        process.wait(timeout=30)
