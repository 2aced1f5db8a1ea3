"""A Redis that is down never stops the supervisor loop: each failed call is one ``RedisUnavailable`` line."""
from __future__ import annotations

import dataclasses
import logging
import socket

import pytest
import redis

from schema.settings import Settings
from supervisor.daemon import Supervisor


@pytest.fixture
def unreachable_redis():
    with socket.socket() as sock:  # a port nothing listens on: every call is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    yield client
    client.close()


@pytest.fixture
def supervisor(unreachable_redis):
    settings = dataclasses.replace(Settings.from_env(), heartbeat_interval=0.1)
    return Supervisor(settings, session_factory=None, client=unreachable_redis)


def _outages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("RedisUnavailable")]


def test_each_failed_redis_call_is_logged_once_with_what_it_was_doing(supervisor, caplog):
    with caplog.at_level(logging.WARNING, logger="kcm.supervisor"):
        assert supervisor._wait_for_commands() is False
        supervisor._beat()
        supervisor.shutdown()  # no workers: only the withdrawal touches Redis
    outages = _outages(caplog)
    assert [line.split(":")[1].strip() for line in outages] == [
        "reading commands", "supervisor heartbeat", "withdrawing"]
    assert all("Connection refused" in line or "Error 111" in line for line in outages)


def test_a_sweep_that_found_redis_down_is_tried_again_at_the_next_reconcile(supervisor, caplog):
    with caplog.at_level(logging.WARNING, logger="kcm.supervisor"):
        supervisor._sweep_forgotten_states({})
    assert supervisor._swept is False
    assert [line.split(":")[1].strip() for line in _outages(caplog)] == ["sweeping state hashes"]

