"""Fixtures for the API tests: the real app on the test PostgreSQL database and Redis DB index.

Authentication is on, as in production: every app's test client sends the bootstrap admin token unless made
with ``app.test_client(token=None)`` (no credentials) or another token."""
from __future__ import annotations

import dataclasses
import socket

import pytest
from flask.testing import FlaskClient

from api import create_app
from api.context import EXTENSION
from schema import keys
from schema.settings import Settings

VALID_CONSUMER = {
    "broker_ip": "127.0.0.1",
    "broker_port": 19092,
    "topic": "orders",
    "consumer_group": "billing",
}


def closed_port_url() -> str:
    """A Redis URL on a port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


ADMIN_TOKEN = "kcm_test-bootstrap-admin-token-0123456789abcdef"
# far above what a test sends: the rate-limit tests set their own limits
TEST_RATE_LIMIT = "100000/minute"


class AuthenticatedClient(FlaskClient):
    """Sends ``Authorization: Bearer <token>`` on every request (the bootstrap admin's unless told otherwise)."""

    def __init__(self, *args, token: str | None = ADMIN_TOKEN, **kwargs):
        super().__init__(*args, **kwargs)
        self.token = token

    def open(self, *args, **kwargs):
        if self.token is not None:
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("Authorization", f"Bearer {self.token}")
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)


def test_settings(database_url: str, redis_url: str, **overrides) -> Settings:
    values = {"bootstrap_admin_token": ADMIN_TOKEN, "auth": "enabled", "rate_limit_read": TEST_RATE_LIMIT,
              "rate_limit_write": TEST_RATE_LIMIT, **overrides}
    return dataclasses.replace(Settings.from_env(), database_url=database_url, redis_url=redis_url, **values)


def make_app(database_url: str, redis_url: str, **overrides):
    app = create_app(test_settings(database_url, redis_url, **overrides))
    app.testing = True
    app.test_client_class = AuthenticatedClient
    return app


@pytest.fixture
def app(pg_clean, redis_client, redis_test_url, pg_url):
    app = make_app(pg_url, redis_test_url)
    yield app
    app.extensions[EXTENSION].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def sqlite_client(sqlite_url, redis_client, redis_test_url):
    app = make_app(sqlite_url, redis_test_url)
    yield app.test_client()
    app.extensions[EXTENSION].close()


@pytest.fixture
def redis_down_app(pg_clean, pg_url):
    app = make_app(pg_url, closed_port_url())
    yield app
    app.extensions[EXTENSION].close()


@pytest.fixture
def commands(redis_client):
    """Read the command stream: ``commands()`` returns every entry's fields as a dict of str."""

    def read() -> list[dict[str, str]]:
        return [
            {k.decode(): v.decode() for k, v in fields.items()}
            for _id, fields in redis_client.xrange(keys.COMMAND_STREAM)
        ]

    return read


@pytest.fixture
def create_consumer(client):
    def create(**fields) -> dict:
        response = client.post("/consumers/", json={**VALID_CONSUMER, **fields})
        assert response.status_code == 201, response.json
        return response.json

    return create


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request):
    """Each test that uses it runs on PostgreSQL and on SQLite (the embedded default)."""
    if request.param == "postgresql":
        request.getfixturevalue("pg_clean")
        return request.getfixturevalue("pg_url")
    return request.getfixturevalue("sqlite_url")


@pytest.fixture
def kcm(database_url, redis_client, redis_test_url):
    """The API's service layer over ``database_url``, without HTTP."""
    from api.context import build_services

    services = build_services(test_settings(database_url, redis_test_url))
    yield services
    services.close()


def consumer_data(**overrides) -> dict:
    """A complete ConsumerIn load result (what the schema hands the service)."""
    return {**VALID_CONSUMER, "client_id": None, "replicas": 1, "auto_offset_reset": "earliest",
            "security": None, "downstream_processors": [], **overrides}
