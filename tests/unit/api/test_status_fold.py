"""Folding replica hashes into the status body: severity order, ISO times, garbled values."""
from __future__ import annotations

import pytest

from api.services.status import iso_utc, overall_state, replica_status
from schema.states import ProcessState as S


def replicas(*states):
    return [{"state": s} for s in states]


def test_nothing_reported_is_unknown():
    assert overall_state([]) == S.UNKNOWN
    assert overall_state(replicas(S.UNKNOWN, S.UNKNOWN)) == S.UNKNOWN


@pytest.mark.parametrize("order", [
    [S.FATAL, S.BACKOFF, S.EXITED, S.STARTING, S.STOPPING, S.RUNNING, S.STOPPED],
])
def test_severity_order(order):
    for i, state in enumerate(order):
        assert overall_state(replicas(*order[i:], S.UNKNOWN)) == state
        assert overall_state(replicas(*reversed(order[i:]))) == state


def test_iso_utc():
    assert iso_utc("0") == "1970-01-01T00:00:00+00:00"
    assert iso_utc("1700000000.5") == "2023-11-14T22:13:20.500000+00:00"
    for bad in (None, "", "soon", "1e400", "nan"):
        assert iso_utc(bad) is None


def test_supervisor_state_wins_over_heartbeat_and_heartbeat_adds_counters():
    state = {"state": "RUNNING", "pid": "10", "host": "a", "restarts": "3", "started_at": "100"}
    beat = {"pid": "10", "host": "b", "last_heartbeat": "200", "partitions": '["t:0"]', "messages": "5",
            "last_error": "slow sink"}
    replica = replica_status(0, state, beat)
    assert replica["pid"] == 10 and replica["host"] == "a" and replica["restarts"] == 3
    assert replica["alive"] is True and replica["partitions"] == ["t:0"] and replica["messages"] == 5
    assert replica["last_heartbeat"] == iso_utc("200") and replica["last_error"] == "slow sink"


def test_only_a_heartbeat_is_an_unknown_state_but_alive():
    replica = replica_status(1, {}, {"pid": "7", "started_at": "50", "last_heartbeat": "60"})
    assert replica["state"] == S.UNKNOWN and replica["alive"] is True and replica["pid"] == 7
    assert replica["started_at"] == iso_utc("50")


def test_last_beat_of_a_failed_exit_is_not_alive_but_keeps_its_reason():
    beat = {"pid": "7", "phase": "exited", "last_heartbeat": "60", "last_error": "DeliveryFailed: RetriableError"}
    replica = replica_status(0, {"state": "BACKOFF"}, beat)
    assert replica["alive"] is False
    assert replica["last_error"] == "DeliveryFailed: RetriableError"
