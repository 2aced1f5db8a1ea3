"""/readyz through real outages: the Procfile's web line (gunicorn with deploy/gunicorn.conf.py) over a socket,
on a PRIVATE Redis and a PRIVATE PostgreSQL (tests/chaos/services.py; the shared ones are never stopped), answers
200, then 503 naming the dependency within seconds of stopping it, then 200 again once it is back; /healthz stays
200 throughout (a Kubernetes liveness probe must not restart the API for a dependency's outage). A network
partition (PostgreSQL's packets go nowhere, its connections stay open) must not hang the check either."""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from schema.migrate import upgrade
from tests.chaos.services import PrivatePostgres, PrivateRedis, free_port

ROOT = Path(__file__).resolve().parents[3]
ADMIN_TOKEN = "kcm_readyz-outage-admin-token-0123456789abcdef"
NOTICED_WITHIN = 5.0  # seconds from a stop (or a start) to /readyz saying so
BACK_WITHIN = 15.0


def get(url: str, timeout: float = 5) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Web:
    """The Procfile's web process on a free port; every readiness poll also checks liveness."""

    def __init__(self, database_url: str, redis_url: str, log: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        web_line = next(line.split(": ", 1)[1] for line in (ROOT / "Procfile").read_text().splitlines()
                        if line.startswith("web: "))
        argv = shlex.split(web_line)
        argv[0] = str(Path(sys.executable).with_name(argv[0]))  # the virtualenv's gunicorn
        env = {**os.environ, "KCM_DATABASE_URL": database_url, "KCM_REDIS_URL": redis_url, "PORT": str(self.port),
               "KCM_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN, "KCM_LOG_FORMAT": "json"}
        self.log = log
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.liveness_polls = 0

    def ready(self) -> tuple[int, dict]:
        # a liveness probe's own timeout (deploy/k8s/web.yaml: 3 s): it must answer within it, whatever is down
        alive, body = get(f"{self.base}/healthz", timeout=3)
        assert alive == 200 and body == {"status": "alive"}, (alive, body)
        self.liveness_polls += 1
        return get(f"{self.base}/readyz", timeout=NOTICED_WITHIN)

    def wait_ready(self, expected: int, timeout: float, what: str) -> tuple[float, dict]:
        started = time.monotonic()
        deadline = started + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"gunicorn exited: {self.log.read_text()[-2000:]}"
            try:
                status, body = self.ready()
            except OSError as exc:  # not listening yet
                last = exc
            else:
                if status == expected:
                    return time.monotonic() - started, body
                last = (status, body)
            time.sleep(0.1)
        raise AssertionError(f"/readyz not {expected} {what} within {timeout} s (last {last}; "
                             f"log {self.log.read_text()[-1500:]!r})")

    def close(self, grace: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the master and its workers (their own session)
                self.proc.wait(5)


class PartitionProxy:
    """A TCP proxy to PostgreSQL that can stop forwarding: connections stay open and their bytes go nowhere,
    new ones are accepted and never answered (a network partition, not a refused port)."""

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.partitioned = threading.Event()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.partitioned.is_set():
                continue  # held open, never answered
            upstream = socket.create_connection(self.upstream)
            self.sockets.append(upstream)
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.partitioned.is_set() and not self.closed.is_set():
                    self.closed.wait(0.05)  # the partition: hold the bytes
                target.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.closed.set()
        for sock in [self.listener, *self.sockets]:
            sock.close()


@pytest.fixture(scope="module")
def started_services():
    """One private Redis and PostgreSQL for the module (PostgreSQL's initdb is the slow part)."""
    redis_service, postgres = PrivateRedis(), PrivatePostgres()
    try:
        redis_service.start()
        postgres.start()
        upgrade(postgres.url)
        yield redis_service, postgres
    finally:
        redis_service.close()
        postgres.close()


@pytest.fixture
def private_services(started_services):
    """Both up at the start of each test, whatever the previous one left stopped."""
    redis_service, postgres = started_services
    if redis_service.proc is None:
        redis_service.start()
    postgres.start()  # services.sh: a no-op when it runs
    return redis_service, postgres


@pytest.fixture
def web(private_services, tmp_path):
    redis_service, postgres = private_services
    server = Web(postgres.url, redis_service.url, tmp_path / "web.log")
    try:
        yield server
    finally:
        server.close()


def assert_not_ready_because_of(body: dict, dependency: str) -> None:
    assert set(body) == {"code", "status", "message", "errors"}, body
    assert body["code"] == 503 and list(body["errors"]) == [dependency], body
    assert "unreachable" in body["errors"][dependency][0] and dependency in body["message"], body


def test_readyz_follows_a_redis_outage_and_a_postgres_outage_while_healthz_stays_200(web, private_services):
    redis_service, postgres = private_services
    _took, body = web.wait_ready(200, 60, "at start")
    assert body["status"] == "ready" and body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]

    redis_service.stop()
    _took, body = web.wait_ready(503, NOTICED_WITHIN, "after Redis stopped")
    assert_not_ready_because_of(body, "redis")
    redis_service.start()
    _took, body = web.wait_ready(200, BACK_WITHIN, "after Redis came back")
    assert body["checks"]["redis"] == {"ok": True, "detail": "reachable"}

    postgres.stop()
    _took, body = web.wait_ready(503, NOTICED_WITHIN, "after PostgreSQL stopped")
    assert_not_ready_because_of(body, "database")
    # while it is down the answer stays 503 (no stale 200 from a pooled connection)
    for _ in range(3):
        status, body = web.ready()
        assert status == 503 and list(body["errors"]) == ["database"], body
    postgres.start()
    _took, body = web.wait_ready(200, BACK_WITHIN, "after PostgreSQL came back")
    assert body["checks"]["database"]["ok"] and "migrations at head" in body["checks"]["database"]["detail"]
    assert web.liveness_polls > 5


# a partitioned PostgreSQL (connections open, nothing forwarded) must not hang /readyz nor, with it, /healthz
def test_readyz_is_503_within_seconds_of_a_postgres_partition_and_healthz_keeps_answering(private_services,
                                                                                          tmp_path):
    redis_service, postgres = private_services
    proxy = PartitionProxy(postgres.port)
    server = Web(postgres.url.replace(f":{postgres.port}/", f":{proxy.port}/"), redis_service.url,
                 tmp_path / "web.log")
    try:
        server.wait_ready(200, 60, "at start")
        proxy.partitioned.set()
        _took, body = server.wait_ready(503, NOTICED_WITHIN, "after the partition began")
        assert_not_ready_because_of(body, "database")
        for _ in range(3):  # more checks than gunicorn has workers (2): none may be left hanging
            status, body = server.ready()
            assert status == 503 and list(body["errors"]) == ["database"], body
        proxy.partitioned.clear()
        server.wait_ready(200, BACK_WITHIN, "after the partition healed")
    finally:
        proxy.close()
        server.close(grace=5)  # a worker still stuck on the partition would hold a graceful stop for 30 s
