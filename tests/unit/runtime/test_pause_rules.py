"""The pure rules of pause and resume: which pause key value a worker follows, the spec's flag, the status truth
of a paused replica, and a health verdict that does not alarm on a paused consumer's growing lag."""
from __future__ import annotations

import json

from api.services.status import folded_status, overall_state, replica_status
from schema.health import PartitionSample, Sample, Thresholds, Verdict, judge_consumer
from schema.spec import WorkerSpec
from schema.states import ConsumerStatus, ProcessState
from workers.control import desired_pause
from workers.heartbeat import WorkerStatus

STATE = {"state": "RUNNING", "pid": "42", "generation": "3", "supervisor_id": "s1"}


def beat(**fields) -> dict[str, str]:
    return {"pid": "42", "generation": "3", "phase": "consuming", "partitions": json.dumps(["t:0"]), **fields}


def test_a_worker_follows_only_its_own_generations_pause_key():
    assert desired_pause(json.dumps({"paused": True, "generation": 3}), 3) is True
    assert desired_pause(json.dumps({"paused": False, "generation": 3}).encode(), 3) is False
    assert desired_pause(json.dumps({"paused": True, "generation": 2}), 3) is None  # an older generation's word
    for nothing in (None, "not json", json.dumps({"paused": True}), json.dumps([1])):
        assert desired_pause(nothing, 3) is None


def test_the_spec_carries_paused_and_an_older_spec_without_it_runs():
    spec = WorkerSpec(consumer_id="c", replica=0, generation=3, bootstrap_servers="b:9092", topic="t",
                      group_id="g", paused=True)
    assert WorkerSpec.from_json(spec.to_json()).paused is True
    older = json.loads(spec.to_json())
    del older["paused"]
    assert WorkerSpec.from_json(json.dumps(older)).paused is False


def test_the_heartbeat_says_paused_and_counts_assignments():
    status = WorkerStatus(pid=1, host="h", generation=3)
    assert status.fields()["paused"] == "0" and status.fields()["assignments"] == "0"
    status.paused, status.assignments = True, 2
    assert status.fields()["paused"] == "1" and status.fields()["assignments"] == "2"


def test_a_paused_replica_that_heartbeats_and_holds_its_partitions_is_paused_not_running():
    paused = replica_status(0, STATE, beat(paused="1"))
    assert paused["state"] == ProcessState.PAUSED and paused["alive"] and "paused" in paused["reason"]
    assert replica_status(0, STATE, beat(paused="0"))["state"] == ProcessState.RUNNING
    assert replica_status(0, STATE, beat())["state"] == ProcessState.RUNNING  # a worker from before pause existed
    # a dead predecessor's paused beat lends nothing to the new pid
    assert replica_status(0, STATE, beat(paused="1", pid="41"))["state"] == ProcessState.UNKNOWN
    # not holding anything yet: still STARTING, whatever it says
    assert replica_status(0, STATE, beat(paused="1", partitions="[]"))["state"] == ProcessState.STARTING


def test_a_paused_consumer_is_paused_overall_and_stays_active():
    replicas = [replica_status(0, STATE, beat(paused="1")), replica_status(1, STATE, beat(partitions='["t:1"]'))]
    assert overall_state(replicas) == ProcessState.PAUSED  # RUNNING only when no replica is paused
    assert folded_status("ACTIVE", "paused", replicas[:1]) == (ConsumerStatus.ACTIVE, None)
    stale = [{**replicas[0], "state": ProcessState.UNKNOWN, "stale": True}]
    assert folded_status("ACTIVE", "paused", stale)[0] == ConsumerStatus.ERROR  # nothing supervises it


def stalled_window(samples: int) -> list[Sample]:
    return [Sample(at=float(i), partitions={0: PartitionSample(committed=10, high_watermark=10 + 5 * i,
                                                               lag_messages=5 * i + 5, lag_seconds=float(i))})
            for i in range(samples)]


def test_a_paused_consumer_with_a_growing_lag_is_paused_not_stalled_unless_a_replica_fails():
    thresholds = Thresholds(window=5)
    window = stalled_window(5)
    running = judge_consumer(window, thresholds, desired_running=True, held_partitions=[0])
    assert running.verdict == Verdict.ERR and "STALL" in running.reason  # the same lag while running alarms
    paused = judge_consumer(window, thresholds, desired_running=True, held_partitions=[0], paused=True)
    assert paused.verdict == Verdict.PAUSED and "lag is still measured" in paused.reason
    assert paused.partitions[0].verdict == Verdict.STALL  # the partitions are still judged
    failing = judge_consumer(window, thresholds, desired_running=True, paused=True, replica_states=[(0, "FATAL")])
    assert failing.verdict == Verdict.ERR
