"""The replica state machine, driven by a fake clock: no processes, no sleeping."""
from __future__ import annotations

import pytest

from schema.exits import EXIT_CONFIG
from schema.replica_machine import (
    HUNG_WORKER_ERROR,
    Action,
    Heartbeat,
    ProcessSample,
    ReplicaMachine,
    Timings,
)
from schema.states import IllegalTransition, ProcessState

READY = Heartbeat(fresh=True, ready=True)
NOT_READY = Heartbeat(fresh=True, ready=False)
LOST = Heartbeat(fresh=False, ready=False)
STOPPED_PROCESS = ProcessSample(cpu_seconds=1.0, stopped=True)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds: float):
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def machine(clock, **overrides) -> ReplicaMachine:
    timings = Timings(startsecs=1, startretries=3, backoff_max=5, stopwaitsecs=10, backoff_base=1,
                      start_timeout=20, stable_secs=30)
    timings = Timings(**{**timings.__dict__, **overrides})
    return ReplicaMachine(timings, clock=clock)


def started(clock, pid=100, generation=1, **overrides) -> ReplicaMachine:
    m = machine(clock, **overrides)
    m.configure(desired_running=True, generation=generation)
    assert m.tick() == [Action.SPAWN]
    m.spawned(pid)
    return m


def running(clock, pid=100, generation=1, **overrides) -> ReplicaMachine:
    m = started(clock, pid, generation, **overrides)
    clock.advance(1)
    assert m.tick(READY) == []
    assert m.state == ProcessState.RUNNING
    return m


def test_stopped_replica_stays_stopped_until_desired_running(clock):
    m = machine(clock)
    m.configure(desired_running=False, generation=1)
    assert m.tick() == [] and m.state == ProcessState.STOPPED
    m.configure(desired_running=True, generation=1)
    assert m.tick() == [Action.SPAWN]
    m.spawned(42)
    assert m.state == ProcessState.STARTING and m.pid == 42 and m.generation == 1


def test_starting_becomes_running_only_after_startsecs_and_a_ready_heartbeat(clock):
    m = started(clock)
    assert m.tick(READY) == [] and m.state == ProcessState.STARTING  # too young
    clock.advance(1.5)
    assert m.tick(None) == [] and m.state == ProcessState.STARTING  # no heartbeat seen
    assert m.tick(NOT_READY) == [] and m.state == ProcessState.STARTING  # still connecting to Kafka
    assert m.tick(READY) == [] and m.state == ProcessState.RUNNING


def test_death_before_startsecs_backs_off_with_growing_capped_delay_then_fatal(clock):
    m = started(clock, startretries=4, backoff_max=3)
    delays = []
    for attempt in range(4):
        m.finish(1, "KafkaUnreachable: 127.0.0.1:1")
        assert m.state == ProcessState.BACKOFF
        assert "KafkaUnreachable" in m.last_error and "exit code 1" in m.last_error
        delays.append(m.backoff_delay)
        clock.advance(m.backoff_delay - 0.01)
        assert m.tick() == []  # not yet
        clock.advance(0.01)
        assert m.tick() == [Action.SPAWN]
        m.spawned(100 + attempt)
        assert m.state == ProcessState.STARTING
    assert delays == [1, 2, 3, 3]  # exponential, capped at backoff_max
    m.finish(1, "KafkaUnreachable: 127.0.0.1:1")
    assert m.state == ProcessState.FATAL and m.retries == 5
    clock.advance(100)
    assert m.tick() == [] and m.state == ProcessState.FATAL  # FATAL does not retry by itself


def test_exit_78_is_fatal_at_once_from_starting_and_running(clock):
    m = started(clock)
    m.finish(EXIT_CONFIG, "ConsumerConfigError: ${env:KAFKA_PASSWORD} is not set")
    assert m.state == ProcessState.FATAL and "configuration error" in m.last_error
    m2 = running(clock, pid=7)
    m2.finish(EXIT_CONFIG)
    assert m2.state == ProcessState.FATAL


def test_restart_with_new_generation_clears_fatal(clock):
    m = started(clock)
    m.finish(EXIT_CONFIG)
    assert m.tick() == []
    m.configure(desired_running=True, generation=1)  # a duplicate command changes nothing
    assert m.tick() == [] and m.state == ProcessState.FATAL
    m.configure(desired_running=True, generation=2)
    assert m.tick() == [Action.SPAWN]
    m.spawned(200)
    assert m.state == ProcessState.STARTING and m.generation == 2 and m.retries == 0


def test_stop_clears_fatal_to_stopped(clock):
    m = started(clock)
    m.finish(EXIT_CONFIG)
    m.configure(desired_running=False, generation=1)
    assert m.tick() == [] and m.state == ProcessState.STOPPED


def test_running_death_goes_exited_and_restarts_at_once(clock):
    m = running(clock)
    clock.advance(5)
    m.finish(-9)
    assert m.state == ProcessState.EXITED and "SIGKILL" in m.last_error
    assert m.tick() == [Action.SPAWN]
    m.spawned(101)
    assert m.state == ProcessState.STARTING and m.restarts == 1


def test_crash_loop_while_running_backs_off_and_resets_after_stable_run(clock):
    m = running(clock)
    m.finish(1)
    assert m.tick() == [Action.SPAWN]  # first death: restart at once
    m.spawned(101)
    clock.advance(1)
    m.tick(READY)
    m.finish(1)
    assert m.state == ProcessState.EXITED and m.backoff_delay == 2
    assert m.tick() == []
    clock.advance(2)
    assert m.tick() == [Action.SPAWN]
    m.spawned(102)
    clock.advance(1)
    m.tick(READY)
    clock.advance(40)  # ran longer than stable_secs
    m.tick(READY)
    m.finish(1)
    assert m.state == ProcessState.EXITED and m.backoff_delay == 0 and m.tick() == [Action.SPAWN]


def test_backoff_counter_resets_once_running(clock):
    m = started(clock)
    m.finish(1)
    clock.advance(m.backoff_delay)
    m.tick()
    m.spawned(101)
    assert m.retries == 1
    clock.advance(1)
    m.tick(READY)
    assert m.state == ProcessState.RUNNING and m.retries == 0


def test_stop_sends_sigterm_then_sigkill_after_stopwaitsecs(clock):
    m = running(clock)
    m.configure(desired_running=False, generation=1)
    assert m.tick(READY) == [Action.SIGTERM] and m.state == ProcessState.STOPPING
    clock.advance(9.9)
    assert m.tick() == []
    clock.advance(0.1)
    assert m.tick() == [Action.SIGKILL]
    assert m.tick() == []  # once
    m.finish(-9)
    assert m.state == ProcessState.STOPPED and m.pid is None


def test_graceful_stop_within_stopwaitsecs(clock):
    m = started(clock)
    m.configure(desired_running=False, generation=1)
    assert m.tick() == [Action.SIGTERM] and m.state == ProcessState.STOPPING
    m.finish(0)
    assert m.state == ProcessState.STOPPED
    assert m.tick() == []


def test_generation_change_stops_gracefully_then_starts_the_new_generation(clock):
    m = running(clock)
    m.configure(desired_running=True, generation=2)
    assert m.tick(READY) == [Action.SIGTERM] and m.state == ProcessState.STOPPING
    with pytest.raises(RuntimeError):
        m.spawned(999)  # never two live processes for one replica
    m.finish(0)
    assert m.state == ProcessState.STOPPED
    assert m.tick() == [Action.SPAWN]
    m.spawned(101)
    assert m.generation == 2


def test_hung_running_worker_is_killed_and_restarted_with_reason(clock):
    m = running(clock)
    assert m.tick(None) == []  # heartbeat unknown (Redis down): no decision
    assert m.tick(LOST, sample=lambda: STOPPED_PROCESS) == [Action.SIGKILL]  # SIGSTOPped: confirmed at once
    assert m.last_error == HUNG_WORKER_ERROR
    assert m.tick(LOST) == []  # killed once; wait for the reap
    m.finish(-9)
    assert m.state == ProcessState.EXITED and m.last_error == HUNG_WORKER_ERROR
    assert m.tick() == [Action.SPAWN]


def test_worker_never_ready_is_killed_at_start_timeout_and_backs_off(clock):
    m = started(clock)
    clock.advance(19)
    assert m.tick(NOT_READY) == []
    clock.advance(1)
    assert m.tick(NOT_READY) == [Action.SIGKILL]
    m.finish(-9)
    assert m.state == ProcessState.BACKOFF and "WorkerStartTimeout" in m.last_error


def test_worker_error_in_heartbeat_shows_while_it_runs_and_clears(clock):
    m = running(clock)
    m.tick(Heartbeat(fresh=True, ready=True, last_error="TopicNotFound: orders"))
    assert m.last_error == "TopicNotFound: orders"
    m.tick(READY)
    assert m.last_error == ""


def test_spawn_failure_counts_as_a_failed_start(clock):
    m = machine(clock)
    m.configure(desired_running=True, generation=1)
    m.tick()
    m.spawn_failed("OSError: no such file")
    assert m.state == ProcessState.BACKOFF and m.retries == 1


def test_stopping_a_backoff_replica_stops_it(clock):
    m = started(clock)
    m.finish(1)
    m.configure(desired_running=False, generation=1)
    assert m.tick() == [] and m.state == ProcessState.STOPPED


def test_illegal_transition_raises(clock):
    m = machine(clock)
    with pytest.raises(IllegalTransition):
        m._move(ProcessState.RUNNING)  # STOPPED -> RUNNING skips STARTING
    m = running(clock)
    with pytest.raises(IllegalTransition):
        m._move(ProcessState.BACKOFF)


def test_snapshot_is_all_strings(clock):
    m = running(clock)
    snap = m.snapshot()
    assert snap["state"] == "RUNNING" and snap["pid"] == "100" and snap["generation"] == "1"
    assert all(isinstance(v, str) for v in snap.values())
