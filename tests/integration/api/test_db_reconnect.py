"""schema.db pings a pooled PostgreSQL connection only when it sat idle (pool_pre_ping cost a round trip per
request): a connection the server dropped must still never reach a user as a 500."""
from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from api.context import EXTENSION
from schema.db import PING_AFTER_IDLE_SECONDS
from tests.integration.api.conftest import VALID_CONSUMER, make_app


@pytest.fixture
def pg_app(pg_clean, pg_url, redis_client, redis_test_url):
    app = make_app(pg_url, redis_test_url)
    yield app
    app.extensions[EXTENSION].close()


def kill_pooled_connections(app, pg_engine) -> int:
    """Terminate the server side of the app's pooled connection(s), as a restart or an operator would."""
    kcm = app.extensions[EXTENSION]
    with kcm.engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    return pid


def test_the_list_survives_a_connection_the_server_just_dropped(pg_app, pg_engine):
    client = pg_app.test_client()
    consumer = client.post("/consumers/", json=VALID_CONSUMER).json
    assert client.get("/consumers/").status_code == 200
    kill_pooled_connections(pg_app, pg_engine)
    response = client.get("/consumers/")  # within the idle window: no ping, the read is retried
    assert response.status_code == 200 and [item["id"] for item in response.json] == [consumer["id"]]


def test_an_idle_connection_the_server_dropped_is_replaced_before_any_request_uses_it(pg_app, pg_engine):
    client = pg_app.test_client()
    consumer = client.post("/consumers/", json=VALID_CONSUMER).json
    dead = kill_pooled_connections(pg_app, pg_engine)
    time.sleep(PING_AFTER_IDLE_SECONDS + 0.1)
    response = client.get(f"/consumers/{consumer['id']}/")
    assert response.status_code == 200 and response.json["id"] == consumer["id"]
    with pg_app.extensions[EXTENSION].engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != dead


def test_an_api_key_lookup_survives_a_connection_the_server_just_dropped(pg_app, pg_engine):
    admin = pg_app.test_client()
    token = admin.post("/api-keys/", json={"name": "reader", "role": "viewer"}).json["token"]
    reader = pg_app.test_client(token=token)
    assert reader.get("/processor-types/").status_code == 200
    kill_pooled_connections(pg_app, pg_engine)
    assert reader.get("/processor-types/").status_code == 200  # the lookup ran again on a fresh connection
