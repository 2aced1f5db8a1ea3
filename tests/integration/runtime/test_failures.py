"""Failures the runtime must survive: a bad broker, a hung worker, a twin, a dead supervisor."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from schema.exits import EXIT_LEASE_HELD
from schema.replica_machine import HUNG_WORKER_ERROR
from schema.spec import SPEC_ENV, WorkerSpec
from schema.states import ConsumerStatus
from tests.integration.runtime.conftest import pid_alive
from tests.support.kafka import produce, wait_for


def test_bad_broker_backs_off_with_growing_delays_then_fatal_and_restart_clears_it(runtime, topic_factory):
    topic = topic_factory(partitions=1)
    cid, out = runtime.create_consumer(topic, bootstrap="127.0.0.1:1")
    runtime.start_supervisor()

    delays = []

    def backoff_seen():
        state = runtime.state(cid)
        if state.get("state") == "BACKOFF" and (not delays or delays[-1][0] != state["retries"]):
            delays.append((state["retries"], float(state["backoff_delay"])))
        return state.get("state") == "FATAL" and state

    fatal = wait_for(backoff_seen, timeout=40, interval=0.05, message="FATAL after BACKOFF")
    assert [d for _r, d in delays] == [1.0, 2.0]  # exponential, capped by KCM_BACKOFF_MAX=2, then FATAL
    assert "KafkaUnreachable: 127.0.0.1:1" in fatal["last_error"] and "Connection refused" in fatal["last_error"]
    assert fatal["retries"] == "3"
    wait_for(lambda: runtime.consumer(cid).status == ConsumerStatus.ERROR, timeout=10, message="status ERROR")

    # the restart command (a generation bump) clears FATAL: fix the broker and restart
    generation = runtime.change(cid, bootstrap_servers=[runtime.bootstrap], command="restart")
    state = runtime.wait_state(cid, "RUNNING")
    assert state["generation"] == str(generation) and state["last_error"] == ""
    produce(runtime.bootstrap, topic, 10)
    wait_for(lambda: len(runtime.collected(out)) >= 10, timeout=20, message="consuming after the restart")


def test_authentication_failure_is_fatal_at_once_and_the_secret_stays_out_of_status_and_logs(
        runtime, topic_factory):
    topic = topic_factory(partitions=1)
    cid, _out = runtime.create_consumer(topic, security={
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "kcm",
        "sasl.password": "${env:KCM_SECRET_RT_KAFKA_PASSWORD}"})
    runtime.start_supervisor(KCM_SECRET_RT_KAFKA_PASSWORD="pw-9f3a1c-never-shown")
    state = runtime.wait_state(cid, "FATAL")
    assert "KafkaAuthenticationFailed" in state["last_error"] and state["retries"] == "0"
    assert "pw-9f3a1c-never-shown" not in str(state) + str(runtime.heartbeat(cid)) + runtime.supervisor_log()


def test_sigstop_worker_is_detected_hung_killed_and_replaced_never_twice_alive(runtime, topic_factory):
    topic = topic_factory(partitions=1)
    cid, out = runtime.create_consumer(topic)
    runtime.start_supervisor()
    hung_pid = runtime.worker_pid(cid)

    os.kill(hung_pid, signal.SIGSTOP)
    live_counts = []

    def replaced():
        live_counts.append(len(runtime.worker_pids()))
        state = runtime.state(cid)
        return state.get("state") == "RUNNING" and state.get("pid") != str(hung_pid) and state

    state = wait_for(replaced, timeout=20, interval=0.05, message="hung worker replaced")
    assert not pid_alive(hung_pid)
    assert max(live_counts) == 1, "two live processes for one replica"
    assert HUNG_WORKER_ERROR in runtime.supervisor_log()
    assert int(state["restarts"]) == 1
    produce(runtime.bootstrap, topic, 50)
    wait_for(lambda: len(set(runtime.collected(out))) >= 50, timeout=20, message="the replacement consumes")


def test_second_worker_for_the_same_replica_refuses_to_run(runtime, topic_factory):
    topic = topic_factory(partitions=1)
    cid, out = runtime.create_consumer(topic)
    runtime.start_supervisor()
    pid = runtime.worker_pid(cid)

    spec = WorkerSpec.from_consumer(runtime.consumer_with_processors(cid), 0)
    twin = subprocess.run([sys.executable, "-m", "workers"], env={**runtime.env, SPEC_ENV: spec.to_json()},
                          capture_output=True, timeout=30)
    assert twin.returncode == EXIT_LEASE_HELD
    assert b"LeaseHeld" in twin.stderr
    assert runtime.state(cid)["pid"] == str(pid) and pid_alive(pid)
    produce(runtime.bootstrap, topic, 20)
    wait_for(lambda: len(runtime.collected(out)) >= 20, timeout=20, message="the lease holder keeps consuming")


def test_sigkill_supervisor_takes_its_workers_down_no_orphan(runtime, topic_factory):
    topic = topic_factory(partitions=4)
    cid, _out = runtime.create_consumer(topic, replicas=2)
    supervisor = runtime.start_supervisor()
    pids = [runtime.worker_pid(cid, 0), runtime.worker_pid(cid, 1)]
    assert all(pid_alive(p) for p in pids)

    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait(5)
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=10, message="workers exit with their supervisor")
    assert runtime.worker_pids() == []

    # a new supervisor re-creates them from desired state
    runtime.start_supervisor()
    wait_for(lambda: runtime.state(cid, 0).get("state") == "RUNNING" and runtime.state(cid, 0)["pid"] != str(
        pids[0]), timeout=20, message="replica 0 re-created")
    runtime.wait_state(cid, "RUNNING", 1)
    assert len(runtime.worker_pids()) == 2
