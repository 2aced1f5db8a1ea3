"""The processor error-rate WARN of schema/health.py: hand-made windows whose samples carry each replica's published
retries + dead-lettered + skipped (the clock is the samples'), and their round trip through the window's JSON."""
from __future__ import annotations

from schema.health import (
    PartitionSample,
    ProcessorErrors,
    Sample,
    Thresholds,
    Verdict,
    error_rates,
    judge_consumer,
)
from supervisor.lag.store import ReplicaView, decode_sample, encode_sample
from supervisor.lag.throughput import Counters

THRESHOLDS = Thresholds(window=4, error_rate_warn=0.5)
STARTED = 1000.0  # the first worker's start, before the window


def window(*errors: dict[int, tuple[float, int]] | None, lag=(0, 0, 0, 0), committed=(10, 10, 10, 10),
           processor="p1") -> list[Sample]:
    """One sample per 5 s from t=1000; per sample, processor ``p1``'s ``replica -> (started_at, errors)``."""
    return [Sample(at=STARTED + 5.0 * i, partitions={0: PartitionSample(committed[i], committed[i] + lag[i], lag[i],
                                                                       0.0 if not lag[i] else 3.0)},
                   errors={} if e is None else {processor: ProcessorErrors("file_sink", e)})
            for i, e in enumerate(errors)]


def judged(samples, thresholds=THRESHOLDS, **kwargs):
    return judge_consumer(samples, thresholds, desired_running=True, **kwargs)


def test_errors_faster_than_the_threshold_make_an_ok_consumer_warn_naming_the_processor_the_rate_and_setting():
    samples = window({0: (STARTED, 0)}, {0: (STARTED, 4)}, {0: (STARTED, 8)}, {0: (STARTED, 12)})
    result = judged(samples)
    assert result.verdict == Verdict.WARN
    assert result.reason == ("processor p1 (file_sink) failed 12 times in 15 s (0.80 errors/s: retries, "
                             "dead-lettered and skipped messages; KCM_HEALTH_ERROR_RATE_WARN=0.5)")
    assert result.partitions[0].verdict == Verdict.OK  # the partitions are fine: the rule is the processor's


def test_a_rate_at_or_under_the_threshold_or_the_rule_off_stays_ok():
    slow = window({0: (STARTED, 0)}, {0: (STARTED, 2)}, {0: (STARTED, 5)}, {0: (STARTED, 7)})  # 7 in 15 s
    assert judged(slow).verdict == Verdict.OK
    fast = window({0: (STARTED, 0)}, {0: (STARTED, 40)}, {0: (STARTED, 80)}, {0: (STARTED, 120)})
    assert judged(fast, Thresholds(window=4, error_rate_warn=0)).reason == "every partition is OK"


def test_the_rate_needs_a_full_window():
    samples = window({0: (STARTED, 0)}, {0: (STARTED, 50)}, {0: (STARTED, 100)})
    assert judged(samples).verdict == Verdict.OK


def test_a_worker_restart_resets_its_counters_and_only_positive_increments_count():
    # the first worker counts 30 then dies; its successor (started within the window) starts again at 0
    restarted = STARTED + 7.0
    samples = window({0: (STARTED, 30)}, {0: (STARTED, 30)}, {0: (restarted, 1)}, {0: (restarted, 2)})
    rates = error_rates(samples)
    assert rates["p1"][1] == 2 and rates["p1"][0] == 2 / 15  # the drop from 30 to 1 is a reset, not -29 errors
    assert judged(samples).verdict == Verdict.OK
    # a successor that fails as fast as its predecessor did is still WARN
    failing = window({0: (STARTED, 30)}, {0: (STARTED, 36)}, {0: (restarted, 6)}, {0: (restarted, 12)})
    assert error_rates(failing)["p1"][1] == 18 and judged(failing).verdict == Verdict.WARN


def test_a_heartbeat_missing_for_one_sample_is_no_burst_of_errors():
    # an older worker whose beat was missed in one sample comes back with its old counts: a baseline, not new errors
    samples = window({0: (STARTED, 50)}, None, {0: (STARTED, 50)}, {0: (STARTED, 51)})
    assert error_rates(samples)["p1"][1] == 1 and judged(samples).verdict == Verdict.OK


def test_replicas_add_up_and_the_worst_processor_is_named():
    samples = window({0: (STARTED, 0), 1: (STARTED, 0)}, {0: (STARTED, 2), 1: (STARTED, 3)},
                     {0: (STARTED, 4), 1: (STARTED, 5)}, {0: (STARTED, 6), 1: (STARTED, 4)})
    assert error_rates(samples)["p1"][1] == 6 + 5  # replica 1's fall from 5 to 4 is no negative count
    for sample, count in zip(samples, (0, 1, 2, 20), strict=True):
        sample.errors["p2"] = ProcessorErrors("http_sink", {0: (STARTED, count)})
    result = judged(samples)
    assert result.verdict == Verdict.WARN and result.reason.startswith("processor p2 (http_sink) failed 20 times")


def test_err_stop_stall_rewind_fatal_stopped_and_paused_still_win():
    errors = ({0: (STARTED, 0)}, {0: (STARTED, 10)}, {0: (STARTED, 20)}, {0: (STARTED, 30)})
    stuck = window(*errors, lag=(5, 5, 5, 5))  # the committed offset never moves while 5 messages wait
    assert judged(stuck, held_partitions=[0]).verdict == Verdict.ERR
    assert "STALL" in judged(stuck, held_partitions=[0]).reason
    assert "STOP" in judged(stuck).reason
    old = window(*errors, lag=(5, 4, 6, 5), committed=(10, 11, 12, 13))
    assert judged(old, Thresholds(window=4, err_seconds=1, error_rate_warn=0.5)).verdict == Verdict.ERR
    rewound = window(*errors, lag=(5, 4, 6, 5), committed=(10, 11, 5, 6))
    assert "REWIND" in judged(rewound).reason
    healthy = window(*errors)
    assert judged(healthy, replica_states=[(0, "FATAL")]).verdict == Verdict.ERR
    assert judge_consumer(healthy, THRESHOLDS, desired_running=False).verdict == Verdict.STOPPED
    assert judged(healthy, paused=True).verdict == Verdict.PAUSED


def test_a_partition_warn_keeps_its_reason_and_adds_the_processors():
    samples = window({0: (STARTED, 0)}, {0: (STARTED, 10)}, {0: (STARTED, 20)}, {0: (STARTED, 30)},
                     lag=(5, 6, 7, 8), committed=(10, 11, 12, 13))
    result = judged(samples)
    assert result.verdict == Verdict.WARN
    assert result.reason.startswith("partition 0 is WARN: commits move, but the lag never fell")
    assert "; processor p1 (file_sink) failed 30 times in 15 s" in result.reason


def test_the_window_keeps_the_errors_through_its_json_and_the_replica_view_builds_them():
    view = ReplicaView(counters={0: Counters("42@1000.0", 1000.0, 5, 50), 1: Counters("43@1001.5", 1001.5, 0, 0)},
                       processors={0: [{"id": "p1", "type": "file_sink", "batches": 9, "retries": 2,
                                        "dead_lettered": 1, "skipped": 3}],
                                   1: [{"id": "p1", "type": "file_sink", "batches": 0, "retries": 1,
                                        "dead_lettered": 0, "skipped": 0}],
                                   2: [{"id": "p1", "type": "file_sink", "batches": 0, "retries": 9,
                                        "dead_lettered": 0, "skipped": 0}]})  # 2: no process identity, left out
    errors = view.processor_errors()
    assert errors == {"p1": ProcessorErrors("file_sink", {0: (1000.0, 6), 1: (1001.5, 1)})}
    sample = Sample(at=1005.25, partitions={0: PartitionSample(3, 9, 6, 1.5)}, errors=errors)
    assert decode_sample(encode_sample(sample)) == sample
    plain = Sample(at=1.0, partitions={0: PartitionSample(None, 0, 0, 0.0)})
    assert '"e"' not in encode_sample(plain) and decode_sample(encode_sample(plain)) == plain
    assert decode_sample('{"at": 1, "p": {}, "e": {"p1": {"t": "x", "r": {"0": "garbled"}}}}') is None
