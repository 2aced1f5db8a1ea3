"""The replica machine through a bad day: Redis outages, hangs confirmed by the process, crash loops that
stay visible. A fake clock drives time; nothing sleeps."""
from __future__ import annotations

from schema.replica_machine import (
    HUNG_WORKER_ERROR,
    WAITING_FOR_REDIS,
    Action,
    Heartbeat,
    ProcessSample,
    ReplicaMachine,
    Timings,
)
from schema.states import ProcessState
from tests.unit.runtime.test_replica_machine import LOST, READY, FakeClock

TIMINGS = Timings(startsecs=1, startretries=3, backoff_max=5, stopwaitsecs=10, backoff_base=1, start_timeout=20,
                  stable_secs=10, heartbeat_ttl=3, liveness_span=8, hang_confirm_secs=3, hang_hard_secs=30)


def running(clock: FakeClock) -> ReplicaMachine:
    m = ReplicaMachine(TIMINGS, clock=clock)
    m.configure(desired_running=True, generation=1)
    assert m.tick() == [Action.SPAWN]
    m.spawned(100)
    clock.advance(1)
    assert m.tick(READY) == [] and m.state == ProcessState.RUNNING
    return m


def busy(cpu: float) -> ProcessSample:
    return ProcessSample(cpu_seconds=cpu, stopped=False)


def test_missing_heartbeat_right_after_redis_came_back_does_not_kill_a_healthy_worker():
    clock = FakeClock()
    m = running(clock)
    for _ in range(10):  # Redis down for 10 s: nothing to judge by
        clock.advance(1)
        assert m.tick(None, redis_up_for=None) == []
    # Redis is back, empty: the heartbeat key is gone until the worker's next beat; CPU is not moving (idle)
    for up in (0.0, 1.0, 2.0, 5.0, 7.5):
        assert m.tick(LOST, redis_up_for=up, sample=lambda: busy(2.0)) == [], f"killed {up} s after Redis came back"
    assert m.tick(READY, redis_up_for=8.5) == []  # the worker beat again
    assert m.state == ProcessState.RUNNING and m.last_error != HUNG_WORKER_ERROR


def test_a_suspect_whose_cpu_moves_is_not_killed_until_the_hard_limit():
    clock = FakeClock()
    m = running(clock)
    cpu = 1.0
    for _ in range(29):
        cpu += 0.05
        assert m.tick(LOST, sample=lambda c=cpu: busy(c)) == []
        clock.advance(1)
    clock.advance(1)
    assert m.tick(LOST, sample=lambda: busy(cpu + 1)) == [Action.SIGKILL]  # 30 s without a heartbeat
    assert m.last_error == HUNG_WORKER_ERROR


def test_a_suspect_whose_cpu_stands_still_is_killed_after_the_confirmation_span():
    clock = FakeClock()
    m = running(clock)
    assert m.tick(LOST, sample=lambda: busy(4.0)) == []
    clock.advance(2)
    assert m.tick(LOST, sample=lambda: busy(4.0)) == []
    clock.advance(1)
    assert m.tick(LOST, sample=lambda: busy(4.0)) == [Action.SIGKILL]


def test_a_heartbeat_clears_the_suspicion():
    clock = FakeClock()
    m = running(clock)
    m.tick(LOST, sample=lambda: busy(4.0))
    clock.advance(2)
    m.tick(READY)
    clock.advance(2)
    assert m.tick(LOST, sample=lambda: busy(4.0)) == []  # a new suspicion starts from here


def test_a_replica_due_to_start_while_redis_is_down_waits_without_counting_a_failed_start():
    clock = FakeClock()
    m = running(clock)
    clock.advance(20)
    m.finish(-9)  # killed while Redis is down
    assert m.state == ProcessState.EXITED
    for _ in range(120):  # two minutes of outage: never spawned, never FATAL
        clock.advance(1)
        assert m.tick(None, redis_up_for=None) == []
    assert m.state == ProcessState.WAITING and m.retries == 0 and m.last_error == WAITING_FOR_REDIS
    assert m.tick(None, redis_up_for=0.0) == [Action.SPAWN]
    m.spawned(101)
    clock.advance(1)
    assert m.tick(READY) == [] and m.state == ProcessState.RUNNING


def test_a_starting_worker_waiting_for_redis_is_not_killed_at_the_start_timeout():
    clock = FakeClock()
    m = ReplicaMachine(TIMINGS, clock=clock)
    m.configure(desired_running=True, generation=1)
    m.tick()
    m.spawned(100)
    for _ in range(60):
        clock.advance(1)
        assert m.tick(None, redis_up_for=None) == []
    assert m.state == ProcessState.STARTING
    clock.advance(1)
    assert m.tick(READY, redis_up_for=1.0) == [] and m.state == ProcessState.RUNNING
    assert m.retries == 0


def test_a_crash_after_a_long_run_stays_troubled_with_its_error_until_a_clean_run():
    clock = FakeClock()
    m = running(clock)
    clock.advance(16)  # ran longer than stable_secs, then the sink failed its batch
    m.finish(70, "DeliveryFailed: RetriableError: file_sink write failed: No space left on device")
    assert m.troubled and "No space left" in m.last_error
    assert m.tick() == [Action.SPAWN]
    m.spawned(101)
    clock.advance(1)
    m.tick(READY)
    assert m.state == ProcessState.RUNNING and m.troubled and "No space left" in m.last_error
    clock.advance(5)
    m.tick(READY)
    assert m.troubled and m.degraded == "recovering"
    clock.advance(5)
    m.tick(READY)
    assert not m.troubled and m.last_error == "" and m.degraded == ""


def test_a_worker_retrying_a_batch_is_troubled_while_it_retries():
    clock = FakeClock()
    m = running(clock)
    clock.advance(30)
    m.tick(READY)
    assert not m.troubled
    m.tick(Heartbeat(fresh=True, ready=True, last_error="RetryingBatch: disk full", retrying=True))
    assert m.troubled and m.degraded == "retrying" and m.last_error == "RetryingBatch: disk full"
    clock.advance(20)
    m.tick(Heartbeat(fresh=True, ready=True, last_error="RetryingBatch: disk full", retrying=True))
    assert m.troubled
    m.tick(READY)  # the batch went through
    assert m.troubled and m.degraded == "recovering"
    clock.advance(10)
    m.tick(READY)
    assert not m.troubled
