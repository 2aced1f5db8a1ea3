"""The status tells the truth: stale supervisors, a new pid with a dead predecessor's heartbeat, no partitions."""
from __future__ import annotations

from api.services.status import folded_status, overall_state, replica_status
from schema.states import ConsumerStatus, ProcessState

STATE = {"state": "RUNNING", "pid": "20", "generation": "3", "supervisor_id": "s1", "host": "h"}
BEAT = {"pid": "20", "generation": "3", "phase": "consuming", "last_heartbeat": "100", "partitions": '["t:0"]',
        "messages": "7"}


def test_running_replica_with_its_own_heartbeat_and_partitions_is_running():
    r = replica_status(0, STATE, BEAT, supervisor_alive=True)
    assert r["state"] == ProcessState.RUNNING and r["alive"] is True and r["partitions"] == ["t:0"]
    assert r["reason"] is None and r["stale"] is False


def test_replica_of_a_dead_supervisor_is_unknown_and_stale():
    r = replica_status(0, STATE, {}, supervisor_alive=False)
    assert r["state"] == ProcessState.UNKNOWN and r["stale"] is True and r["alive"] is False
    assert "supervisor s1 is not heartbeating" in r["reason"] and r["reported_state"] == ProcessState.RUNNING
    assert overall_state([r]) == ProcessState.UNKNOWN


def test_new_pid_does_not_borrow_the_dead_workers_heartbeat():
    state = {**STATE, "state": "STARTING", "pid": "21"}
    r = replica_status(0, state, BEAT, supervisor_alive=True)  # BEAT is pid 20's, still within its TTL
    assert r["alive"] is False and r["partitions"] is None and r["messages"] is None
    assert r["last_heartbeat"] is None and r["pid"] == 21 and r["state"] == ProcessState.STARTING


def test_heartbeat_of_another_generation_is_not_this_process():
    r = replica_status(0, STATE, {**BEAT, "generation": "2"}, supervisor_alive=True)
    assert r["alive"] is False and r["state"] == ProcessState.UNKNOWN


def test_running_without_partitions_is_running_only_when_others_hold_them():
    beat = {**BEAT, "partitions": "[]"}
    alone = replica_status(1, STATE, beat, supervisor_alive=True, partitions_elsewhere=False)
    assert alone["state"] == ProcessState.STARTING and "no partition" in alone["reason"]
    spare = replica_status(1, STATE, beat, supervisor_alive=True, partitions_elsewhere=True)
    assert spare["state"] == ProcessState.RUNNING


def test_consumer_is_active_only_if_a_replica_really_runs():
    dead = replica_status(0, STATE, {}, supervisor_alive=False)
    status, reason = folded_status(ConsumerStatus.ACTIVE, "running", [dead])
    assert status == ConsumerStatus.ERROR and "supervisor" in reason
    silent = replica_status(0, STATE, {}, supervisor_alive=True)
    assert folded_status(ConsumerStatus.ACTIVE, "running", [silent])[0] == ConsumerStatus.INACTIVE
    live = replica_status(0, STATE, BEAT, supervisor_alive=True)
    assert folded_status(ConsumerStatus.ACTIVE, "running", [live, silent]) == (ConsumerStatus.ACTIVE, None)
    assert folded_status(ConsumerStatus.ERROR, "running", [live])[0] == ConsumerStatus.ERROR


def test_a_degraded_replica_says_why():
    r = replica_status(0, {**STATE, "degraded": "retrying"}, BEAT, supervisor_alive=True)
    assert r["state"] == ProcessState.RUNNING and r["degraded"] == "retrying" and "retrying" in r["reason"]
