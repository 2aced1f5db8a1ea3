"""The throughput rate from heartbeat counters (supervisor/lag/throughput.py): pure, clock injected."""
from __future__ import annotations

from supervisor.lag.throughput import Counters, Snapshot, ThroughputTracker, counters_of, rate


def beat(pid: int, started_at: float, messages: int, size: int | None = None) -> Counters:
    return Counters(process=f"{pid}@{started_at}", started_at=started_at, messages=messages,
                    bytes=messages * 100 if size is None else size)


def test_the_rate_is_the_counters_increase_over_the_span():
    snaps = [Snapshot(100.0, {0: beat(1, 10.0, 1000), 1: beat(2, 10.0, 50)}),
             Snapshot(110.0, {0: beat(1, 10.0, 1500), 1: beat(2, 10.0, 150)}),
             Snapshot(120.0, {0: beat(1, 10.0, 2000), 1: beat(2, 10.0, 250)})]
    value = rate(snaps)
    assert value.messages_per_second == (1000 + 200) / 20
    assert value.bytes_per_second == 120_000 / 20
    assert value.window_seconds == 20 and value.sampled_at == 120.0


def test_a_worker_restart_resetting_its_counters_never_gives_a_negative_rate():
    # replica 0's worker died after 5000 messages; its successor (new pid, new started_at) counted 300 so far
    snaps = [Snapshot(100.0, {0: beat(1, 10.0, 4000)}),
             Snapshot(110.0, {0: beat(1, 10.0, 5000)}),
             Snapshot(120.0, {0: beat(7, 115.0, 300)})]
    value = rate(snaps)
    assert value.messages_per_second == (1000 + 300) / 20
    assert value.bytes_per_second >= 0


def test_a_counter_that_goes_down_in_the_same_process_counts_nothing():
    value = rate([Snapshot(0.0, {0: beat(1, 0.0, 500)}), Snapshot(10.0, {0: beat(1, 0.0, 400)})])
    assert value.messages_per_second == 0 and value.bytes_per_second == 0


def test_the_first_sight_of_an_old_worker_is_a_baseline_not_a_burst():
    # the monitor (re)started: a worker that has run for an hour shows 3.6 M messages; that is not this minute's
    snaps = [Snapshot(3600.0, {}), Snapshot(3610.0, {0: beat(1, 0.0, 3_600_000)}),
             Snapshot(3620.0, {0: beat(1, 0.0, 3_600_100)})]
    assert rate(snaps).messages_per_second == 100 / 20


def test_a_worker_started_within_the_window_counts_everything_it_did():
    snaps = [Snapshot(100.0, {}), Snapshot(110.0, {0: beat(3, 105.0, 400)})]
    assert rate(snaps).messages_per_second == 40


def test_a_stopped_consumer_falls_to_zero_and_one_snapshot_is_no_rate():
    assert rate([Snapshot(0.0, {0: beat(1, 0.0, 10)})]) is None
    snaps = [Snapshot(0.0, {0: beat(1, 0.0, 10)}), Snapshot(10.0, {})]  # clean exit: the heartbeat is gone
    assert rate(snaps).messages_per_second == 0


def test_the_tracker_keeps_one_minute():
    tracker = ThroughputTracker()
    for t in range(0, 200, 5):  # 10 messages a second throughout
        value = tracker.observe("c", Snapshot(float(t), {0: beat(1, 0.0, 10 * t)}))
    assert value.messages_per_second == 10
    assert value.window_seconds == 60
    assert len(tracker.history["c"]) == 13
    tracker.forget(["c"])
    assert "c" not in tracker.history


def test_counters_of_reads_heartbeat_fields_and_rejects_garbage():
    assert counters_of(b"42", b"1700000000.500", b"10", b"1000") == Counters("42@1700000000.500", 1700000000.5, 10,
                                                                               1000)
    assert counters_of(None, None, None, None) is None
    assert counters_of(b"42", b"x", b"10", b"1000") is None
