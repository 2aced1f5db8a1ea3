"""Reconciliation: desired state in the database wins, whatever the commands and restarts."""
from __future__ import annotations

import json
import signal
import time
import uuid

from schema import keys
from schema.models import Consumer
from schema.states import DesiredState
from tests.integration.runtime.conftest import pid_alive
from tests.support.kafka import produce, wait_for


def test_supervisor_down_while_desired_state_changes_converges_after_restart(runtime, topic_factory):
    topic_a, topic_b = topic_factory(partitions=2), topic_factory(partitions=2)
    cid_a, _ = runtime.create_consumer(topic_a)
    cid_b, out_b = runtime.create_consumer(topic_b, running=False)
    cid_c, _ = runtime.create_consumer(topic_b, running=False, replicas=2)
    supervisor = runtime.start_supervisor()
    pid_a = runtime.worker_pid(cid_a)
    runtime.wait_state(cid_b, "STOPPED")
    runtime.wait_state(cid_c, "STOPPED", 1)

    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(15) == 0
    assert not pid_alive(pid_a)
    assert runtime.state(cid_a)["state"] == "STOPPED"  # stopped with its supervisor, and says so
    assert not runtime.redis.exists(keys.supervisor_key(runtime.env["KCM_SUPERVISOR_ID"]))

    # no command reaches anyone: the new supervisor must find the changes in the database alone
    runtime.change(cid_a, desired_state=DesiredState.STOPPED, bump=False)
    runtime.change(cid_b, desired_state=DesiredState.RUNNING, replicas=2, bump=True)
    with runtime.sessions() as session, session.begin():
        session.delete(session.get(Consumer, uuid.UUID(cid_c)))
    runtime.redis.delete(keys.COMMAND_STREAM)
    runtime.start_supervisor()
    runtime.wait_state(cid_b, "RUNNING", 0, timeout=15)
    runtime.wait_state(cid_b, "RUNNING", 1, timeout=15)
    # the deleted consumer's state hashes do not outlive it
    assert not runtime.redis.exists(keys.replica_state_key(cid_c, 0), keys.replica_state_key(cid_c, 1))
    assert runtime.state(cid_a).get("state") == "STOPPED"
    assert len(runtime.worker_pids()) == 2
    produce(runtime.bootstrap, topic_b, 100)
    wait_for(lambda: len(set(runtime.collected(out_b))) >= 100, timeout=20, message="consumer B consumes")


def test_change_without_command_is_picked_up_by_the_periodic_reconcile(runtime, topic_factory):
    topic = topic_factory(partitions=1)
    cid, _ = runtime.create_consumer(topic, running=False)
    runtime.start_supervisor()
    runtime.wait_state(cid, "STOPPED")
    runtime.change(cid, desired_state=DesiredState.RUNNING, bump=False)  # a lost command
    runtime.wait_state(cid, "RUNNING", timeout=40)


def test_same_start_command_ten_times_runs_exactly_one_process(runtime, topic_factory):
    topic = topic_factory(partitions=1)
    cid, _ = runtime.create_consumer(topic, running=False)
    runtime.start_supervisor()
    runtime.wait_state(cid, "STOPPED")
    runtime.change(cid, desired_state=DesiredState.RUNNING, bump=False)
    for _ in range(10):
        runtime.command(cid, "start")
    pid = runtime.worker_pid(cid)
    counts = []
    deadline = time.monotonic() + 3  # keep watching after the commands were all applied
    while time.monotonic() < deadline:
        counts.append(len(runtime.worker_pids()))
        time.sleep(0.1)
    assert set(counts) == {1}
    state = runtime.state(cid)
    assert state["pid"] == str(pid) and state["restarts"] == "0"


def test_three_replicas_share_six_partitions_two_each(runtime, topic_factory):
    topic = topic_factory(partitions=6)
    cid, out = runtime.create_consumer(topic, replicas=3)
    runtime.start_supervisor()
    pids = {runtime.worker_pid(cid, n) for n in range(3)}
    assert len(pids) == 3 and set(runtime.worker_pids()) == pids

    def spread():
        parts = [json.loads(runtime.heartbeat(cid, n).get("partitions", "[]")) for n in range(3)]
        return parts if all(len(p) == 2 for p in parts) else None

    partitions = wait_for(spread, timeout=25, interval=0.2, message="two partitions per replica")
    assert sorted(p for ps in partitions for p in ps) == sorted(f"{topic}:{i}" for i in range(6))
    produce(runtime.bootstrap, topic, 600)
    wait_for(lambda: len(set(runtime.collected(out))) >= 600, timeout=20, message="600 collected by 3 workers")


def test_shrinking_replicas_and_deleting_the_consumer_remove_processes_and_state(runtime, topic_factory):
    topic = topic_factory(partitions=2)
    cid, _ = runtime.create_consumer(topic, replicas=2)
    runtime.start_supervisor()
    runtime.worker_pid(cid, 0)
    pid_1 = runtime.worker_pid(cid, 1)

    runtime.change(cid, replicas=1, command="update")
    wait_for(lambda: not runtime.redis.exists(keys.replica_state_key(cid, 1)), timeout=15,
             message="replica 1 state removed")
    assert not pid_alive(pid_1)
    pid_0 = runtime.worker_pid(cid, 0)  # generation bumped: replica 0 restarted at generation 2
    assert runtime.state(cid, 0)["generation"] == "2"

    with runtime.sessions() as session, session.begin():
        session.delete(session.get(Consumer, uuid.UUID(cid)))
    runtime.command(cid, "delete", 2)
    wait_for(lambda: not runtime.redis.exists(keys.replica_state_key(cid, 0)), timeout=15,
             message="replica 0 state removed")
    wait_for(lambda: not pid_alive(pid_0), timeout=5, message="worker gone")
    assert runtime.worker_pids() == []
