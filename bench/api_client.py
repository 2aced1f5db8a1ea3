"""A small keep-alive JSON client for kcm's API (one connection; not thread-safe: one per thread).

It authenticates with a bearer token: by default ``BENCH_ADMIN_TOKEN``, the bootstrap admin token the bench
stack gives its API (KCM_BOOTSTRAP_ADMIN_TOKEN), new for each bench process."""
from __future__ import annotations

import http.client
import json
import secrets
import time

BENCH_ADMIN_TOKEN = "kcm_bench_" + secrets.token_urlsafe(32)
BENCH_RATE_LIMIT = "100000000/minute"


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__(f"{method} {path} -> {status}: {body[:500]}")
        self.status = status


class KcmClient:
    def __init__(self, hostport: str, timeout: float = 30, token: str | None = BENCH_ADMIN_TOKEN):
        self.hostport = hostport
        self.timeout = timeout
        self.token = token
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            host, port = self.hostport.rsplit(":", 1)
            self._conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        return self._conn

    def request(self, method: str, path: str, body=None) -> tuple[int, bytes]:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        headers.update(auth_headers(self.token))
        for attempt in (1, 2):  # a keep-alive connection the server closed is retried once on a new one
            conn = self._connection()
            try:
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body=None, expect: tuple[int, ...] = (200,)):
        status, data = self.request(method, path, body)
        if status not in expect:
            raise ApiError(method, path, status, data.decode(errors="replace"))
        return json.loads(data) if data else None

    def ready(self) -> bool:
        try:
            return self.request("GET", "/consumers/")[0] == 200
        except OSError:
            self.close()
            return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ kcm's resources
    def create_consumer(self, body: dict) -> dict:
        return self.json("POST", "/consumers/", body, expect=(201,))

    def start(self, consumer_id: str) -> dict:
        return self.json("POST", f"/consumers/{consumer_id}/start/")

    def stop(self, consumer_id: str) -> dict:
        return self.json("POST", f"/consumers/{consumer_id}/stop/")

    def delete(self, consumer_id: str) -> None:
        self.json("DELETE", f"/consumers/{consumer_id}/", expect=(204, 404))

    def status(self, consumer_id: str) -> dict:
        return self.json("GET", f"/consumers/{consumer_id}/status/")

    def wait_status(self, consumer_id: str, predicate, timeout: float = 60, interval: float = 0.1) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.status(consumer_id)
            if predicate(last):
                return last
            time.sleep(interval)
        raise TimeoutError(f"consumer {consumer_id}: condition not reached in {timeout} s (last status {last})")
