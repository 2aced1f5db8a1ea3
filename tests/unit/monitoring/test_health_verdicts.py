"""Each health verdict of schema/health.py, driven by hand-made windows of samples (the clock is the samples')."""
from __future__ import annotations

from schema.health import PartitionSample, Sample, Thresholds, Verdict, judge_consumer, judge_partition, since

WINDOW = Thresholds(window=4)


def series(*points, seconds=None):
    """``(committed, lag)`` points, one per 5 s."""
    return [(t * 5.0, PartitionSample(c, (c or 0) + lag, lag, seconds)) for t, (c, lag) in enumerate(points)]


def verdict(points, thresholds=WINDOW, held=False, seconds=None):
    return judge_partition(series(*points, seconds=seconds), thresholds, held_by_live_worker=held)


def test_any_zero_lag_in_the_window_is_ok():
    assert verdict([(5, 3), (5, 0), (5, 3), (5, 3)]).verdict == Verdict.OK
    assert verdict([(5, 0)]).reason == "caught up (lag 0)"


def test_a_committed_offset_that_goes_back_is_rewind_even_before_the_window_fills():
    judged = verdict([(10, 5), (4, 11)])
    assert judged.verdict == Verdict.REWIND and "from 10 to 4" in judged.reason


def test_no_commit_for_a_full_window_with_lag_and_no_live_worker_is_stop():
    judged = verdict([(7, 3)] * 4)
    assert judged.verdict == Verdict.STOP and "no commit for 15 s while 3 messages wait" in judged.reason


def test_a_never_committed_partition_with_lag_and_no_worker_is_stop():
    assert verdict([(None, 3)] * 4).verdict == Verdict.STOP


def test_no_commit_for_a_full_window_while_a_live_worker_holds_the_partition_is_stall():
    judged = verdict([(7, 3)] * 4, held=True)
    assert judged.verdict == Verdict.STALL and "committed offset stayed at 7" in judged.reason


def test_unmoved_offsets_are_not_judged_before_the_window_is_full():
    judged = verdict([(7, 3)] * 3)
    assert judged.verdict == Verdict.OK and "3 of 4 samples" in judged.reason


def test_moving_commits_with_a_lag_that_never_falls_is_warn():
    judged = verdict([(10, 5), (12, 5), (14, 6), (16, 9)])
    assert judged.verdict == Verdict.WARN and "5 -> 9 messages" in judged.reason


def test_moving_commits_with_a_lag_that_falls_somewhere_is_ok():
    assert verdict([(10, 5), (12, 7), (14, 6), (16, 9)]).verdict == Verdict.OK


def test_the_age_thresholds_warn_and_err_when_set():
    points = [(10, 5), (12, 7), (14, 6), (16, 9)]
    assert verdict(points, Thresholds(window=4, warn_seconds=60), seconds=61).verdict == Verdict.WARN
    judged = verdict(points, Thresholds(window=4, warn_seconds=60, err_seconds=120), seconds=121)
    assert judged.verdict == Verdict.ERR and "KCM_LAG_ERR_SECONDS=120" in judged.reason
    assert verdict(points, Thresholds(window=4), seconds=10_000).verdict == Verdict.OK  # 0: off


def window(*partition_points):
    """Samples whose partition p follows ``partition_points[p]``."""
    length = len(partition_points[0])
    return [Sample(at=t * 5.0, partitions={p: PartitionSample(points[t][0], points[t][0] + points[t][1],
                                                              points[t][1], 1.0)
                                           for p, points in enumerate(partition_points)})
            for t in range(length)]


def test_the_worst_partition_wins_and_stop_stall_rewind_make_the_consumer_err():
    samples = window([(1, 0)] * 4, [(7, 3)] * 4)
    judged = judge_consumer(samples, WINDOW, desired_running=True)
    assert judged.verdict == Verdict.ERR and judged.reason.startswith("partition 1 is STOP:")
    assert judged.partitions[0].verdict == Verdict.OK and judged.partitions[1].verdict == Verdict.STOP
    warn = judge_consumer(window([(10, 5), (12, 5), (14, 6), (16, 9)]), WINDOW, desired_running=True)
    assert warn.verdict == Verdict.WARN


def test_a_fatal_or_crash_looping_replica_is_err_whatever_the_lag():
    samples = window([(1, 0)] * 4)
    fatal = judge_consumer(samples, WINDOW, desired_running=True, replica_states=[(0, "RUNNING"), (1, "FATAL")])
    assert fatal.verdict == Verdict.ERR and fatal.reason.startswith("replica 1 is FATAL")
    looping = judge_consumer(samples, WINDOW, desired_running=True, replica_states=[(0, "BACKOFF")])
    assert looping.verdict == Verdict.ERR and "crash-looping" in looping.reason


def test_a_replica_starting_again_between_backoffs_stays_err_and_a_clean_start_does_not():
    # between two BACKOFFs the supervisor moves the replica to STARTING: the verdict must not flap to OK there
    samples = window([(1, 0)] * 4)
    retrying = judge_consumer(samples, WINDOW, desired_running=True, replica_states=[(0, "STARTING")],
                              failed_starts={0: 2})
    assert retrying.verdict == Verdict.ERR
    assert retrying.reason == "replica 0 is crash-looping (starting again after 2 failed starts)"
    first_start = judge_consumer(samples, WINDOW, desired_running=True, replica_states=[(0, "STARTING")],
                                 failed_starts={0: 0})
    assert first_start.verdict == Verdict.OK


def test_a_stopped_consumer_reads_stopped_with_its_partitions_still_judged():
    judged = judge_consumer(window([(7, 3)] * 4), WINDOW, desired_running=False, replica_states=[(0, "FATAL")])
    assert judged.verdict == Verdict.STOPPED and judged.partitions[0].verdict == Verdict.STOP


def test_no_sample_or_an_unreachable_cluster_is_unknown_never_a_stale_verdict():
    assert judge_consumer([], WINDOW, desired_running=True).verdict == Verdict.UNKNOWN
    judged = judge_consumer(window([(7, 3)] * 4), WINDOW, desired_running=True,
                            unavailable="Kafka cluster unreachable (_TRANSPORT)")
    assert judged.verdict == Verdict.UNKNOWN and judged.partitions == {}
    assert "_TRANSPORT" in judged.reason


def test_a_partition_that_appeared_mid_window_is_judged_on_its_own_samples():
    samples = window([(7, 3)] * 4)
    samples[-1].partitions[1] = PartitionSample(2, 5, 3, 1.0)
    judged = judge_consumer(samples, WINDOW, desired_running=True)
    assert judged.partitions[1].verdict == Verdict.OK and "1 of 4" in judged.partitions[1].reason


def test_since_keeps_the_start_of_a_verdict_that_holds():
    assert since(("ERR", 100.0), Verdict.ERR, 200.0) == 100.0
    assert since(("OK", 100.0), Verdict.ERR, 200.0) == 200.0
    assert since(None, Verdict.OK, 50.0) == 50.0
