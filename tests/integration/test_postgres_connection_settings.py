"""schema.db.make_engine's PostgreSQL connections give up on a server that does not answer, against the real
PostgreSQL: every connection carries the connect timeout, TCP keepalives and tcp_user_timeout of
LIBPQ_CONNECTION_DEFAULTS (in libpq and on the socket itself), the URL's query, the caller's connect_args and
PGCONNECT_TIMEOUT win over them, and a connect to a server that accepts no connection fails after the connect
timeout while the same connect without it is still waiting."""
from __future__ import annotations

import os
import socket
import threading
import time

import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from schema.db import LIBPQ_CONNECTION_DEFAULTS, make_engine

CONNECT_TIMEOUT = LIBPQ_CONNECTION_DEFAULTS["connect_timeout"]
SOCKET_OPTIONS = {  # libpq setting -> (level, option) of the connection's socket, in the unit libpq takes
    "keepalives": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    "keepalives_idle": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    "keepalives_interval": (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    "keepalives_count": (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    "tcp_user_timeout": (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
}


@pytest.fixture(autouse=True)
def no_libpq_environment(monkeypatch):
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)


def connection_settings(engine) -> tuple[dict[str, str], dict[str, int]]:
    """What libpq says the connection was opened with, and the options its TCP socket carries."""
    with engine.connect() as conn:
        dbapi = conn.connection.dbapi_connection
        with socket.socket(fileno=os.dup(dbapi.fileno())) as sock:
            options = {name: sock.getsockopt(level, option) for name, (level, option) in SOCKET_OPTIONS.items()}
        return dbapi.info.dsn_parameters, options


def test_every_connection_carries_the_connect_timeout_keepalives_and_user_timeout(pg_url):
    engine = make_engine(pg_url)
    try:
        libpq, on_socket = connection_settings(engine)
    finally:
        engine.dispose()
    for name, value in LIBPQ_CONNECTION_DEFAULTS.items():
        assert libpq[name] == str(value), (name, libpq.get(name))
    assert on_socket == {name: LIBPQ_CONNECTION_DEFAULTS[name] for name in SOCKET_OPTIONS}


def test_the_urls_query_the_callers_connect_args_and_pgconnect_timeout_win(pg_url, monkeypatch):
    url = make_url(pg_url).update_query_dict({"connect_timeout": "9", "keepalives_idle": "60"})
    engine = make_engine(url.render_as_string(hide_password=False),
                         connect_args={"keepalives_count": 7, "options": "-c lock_timeout=1234"})
    try:
        libpq, on_socket = connection_settings(engine)
        with engine.connect() as conn:
            lock_timeout = conn.execute(sa.text("SHOW lock_timeout")).scalar_one()
    finally:
        engine.dispose()
    assert (libpq["connect_timeout"], libpq["keepalives_idle"], libpq["keepalives_count"]) == ("9", "60", "7")
    assert (on_socket["keepalives_idle"], on_socket["keepalives_count"]) == (60, 7)
    assert libpq["keepalives_interval"] == str(LIBPQ_CONNECTION_DEFAULTS["keepalives_interval"])  # the rest stay
    assert lock_timeout == "1234ms"  # the supervisor's session limits still reach the server
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "7")
    engine = make_engine(pg_url)
    try:
        libpq, _ = connection_settings(engine)
    finally:
        engine.dispose()
    assert libpq["connect_timeout"] == "7"


@pytest.fixture
def silent_server():
    """A TCP port whose listener never accepts: the kernel completes each handshake, nothing ever answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def connect_in_background(connect) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def attempt():
        started = time.monotonic()
        try:
            connect()
            outcome["error"] = None
        except Exception as exc:  # noqa: BLE001 (the outcome is what the test reads)
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    return thread, outcome


def test_a_connect_to_a_server_that_never_answers_fails_after_the_connect_timeout(silent_server):
    # the same connect with libpq's defaults: the control that shows this server makes a connect hang
    bare, bare_outcome = connect_in_background(lambda: psycopg2.connect(
        host="127.0.0.1", port=silent_server, user="kcm", password="kcm", dbname="kcm"))
    engine = make_engine(f"postgresql+psycopg2://kcm:kcm@127.0.0.1:{silent_server}/kcm")
    try:
        ours, outcome = connect_in_background(lambda: engine.connect().close())
        ours.join(CONNECT_TIMEOUT + 20)  # generous on a loaded machine; a hang fails here, not at pytest's timeout
        assert not ours.is_alive(), f"make_engine's connect still waits after {CONNECT_TIMEOUT + 20} s"
    finally:
        engine.dispose()
    assert isinstance(outcome["error"], sa.exc.OperationalError), outcome
    assert "timeout expired" in str(outcome["error"].orig), outcome["error"].orig
    assert CONNECT_TIMEOUT - 1 <= outcome["seconds"] < CONNECT_TIMEOUT + 20, outcome["seconds"]
    bare.join(2)
    assert bare.is_alive(), f"without a connect timeout the connect ended: {bare_outcome}"
