"""Run kcm's real process lines (Procfile via Honcho, deploy/supervisord/kcm.conf via supervisord)."""
from __future__ import annotations

import os
import secrets
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 2.0, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http_ok(url: str, proc, timeout: float = 60, token: str | None = None) -> bytes:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process manager exited with {proc.returncode} before {url} answered")
        try:
            status, body = http_get(url, token=token)
            if status == 200:
                return body
            last = status
        except OSError as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer 200 in {timeout} s (last: {last})")


@pytest.fixture
def kcm_env(sqlite_url, redis_test_url, kafka_bootstrap, tmp_path):
    env = dict(os.environ)
    env.update({
        "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
        "KCM_DATABASE_URL": sqlite_url,
        "KCM_REDIS_URL": redis_test_url,
        "KCM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KCM_SUPERVISOR_ID": f"deploy-test-{os.getpid()}",
        "KCM_FILE_SINK_ROOT": str(tmp_path / "sink"),
        "KCM_BOOTSTRAP_ADMIN_TOKEN": "kcm_" + secrets.token_urlsafe(32),
        "KCM_RECONCILE_INTERVAL": "1",
        "KCM_HEARTBEAT_INTERVAL": "0.5",
        "PYTHONUNBUFFERED": "1",
    })
    (tmp_path / "sink").mkdir()
    return env
