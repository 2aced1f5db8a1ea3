"""The health verdict of a consumer, after Burrow's evaluator: per partition over a sliding window of lag
samples, then per consumer (worst partition wins), combined with what kcm knows about its replicas.

Pure and standard library only: the lag monitor (``supervisor/lag/``) calls ``judge_consumer`` after every
sample with the clock injected; the API and ``/metrics`` only read the verdict it stored. The rules, in the
order they are tried, are spelled out in docs/monitoring.md; the reason a verdict gives names the rule.
A processor's error rate over the window (``error_rates``) can make an otherwise OK consumer WARN.
"""
from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


class Verdict(enum.StrEnum):
    OK = "OK"
    WARN = "WARN"  # the consumer commits but does not catch up, or its oldest message is older than a threshold
    ERR = "ERR"
    STOP = "STOP"  # partition: no commit for the whole window, lag > 0, no live worker holds it
    STALL = "STALL"  # partition: a live worker holds it, yet its committed offset has not moved for the window
    REWIND = "REWIND"  # partition: the committed offset went backwards
    STOPPED = "STOPPED"  # consumer: its desired state is stopped (informational)
    PAUSED = "PAUSED"  # consumer: its desired state is paused (informational: its lag grows by design)
    UNKNOWN = "UNKNOWN"  # consumer: no sample yet, or its cluster could not be read


# a partition's verdicts, least severe first (Burrow's order); the consumer maps the last three to ERR
PARTITION_SEVERITY = (Verdict.OK, Verdict.WARN, Verdict.ERR, Verdict.STOP, Verdict.STALL, Verdict.REWIND)
VERDICTS = tuple(Verdict)
# replica states (schema.states.ProcessState values) that make a consumer ERR whatever its lag
FAILING_REPLICA_STATES = {"FATAL": "is FATAL (it gave up restarting; POST /consumers/{id}/restart/ clears it)",
                          "BACKOFF": "is crash-looping (BACKOFF between failed starts)"}


@dataclass(frozen=True)
class PartitionSample:
    committed: int | None  # None: the group has no committed offset for the partition
    high_watermark: int
    lag_messages: int
    lag_seconds: float | None  # None: unknown (the oldest message could not be read)


@dataclass(frozen=True)
class ProcessorErrors:
    """One processor's errors (retries + dead-lettered + skipped) as each replica's worker published them."""
    processor_type: str
    replicas: dict[int, tuple[float, int]]  # replica -> (its worker's started_at, errors since that start)


@dataclass(frozen=True)
class Sample:
    at: float  # epoch seconds
    partitions: dict[int, PartitionSample]
    errors: dict[str, ProcessorErrors] = field(default_factory=dict)  # processor id -> its errors


@dataclass(frozen=True)
class Thresholds:
    window: int  # samples in the sliding window; STOP, STALL and the lag-trend WARN need a full one
    warn_seconds: float = 0.0  # 0: off
    err_seconds: float = 0.0  # 0: off
    error_rate_warn: float = 0.0  # errors per second of one processor over a full window; 0: off


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str


@dataclass(frozen=True)
class ConsumerJudgement:
    verdict: Verdict
    reason: str
    partitions: dict[int, Judgement]


def _span(samples: Sequence[tuple[float, PartitionSample]]) -> float:
    return samples[-1][0] - samples[0][0]


def judge_partition(samples: Sequence[tuple[float, PartitionSample]], thresholds: Thresholds, *,
                    held_by_live_worker: bool) -> Judgement:
    """``samples``: ``(at, sample)`` of one partition, oldest first, the newest last."""
    current = samples[-1][1]
    lags = [s.lag_messages for _at, s in samples]
    if current.lag_messages == 0 or 0 in lags:
        return Judgement(Verdict.OK, "caught up (lag 0)" if current.lag_messages == 0
                         else "lag reached 0 within the window")
    committed = [s.committed for _at, s in samples]
    for (_at, before), (_at2, after) in itertools.pairwise(samples):
        if before.committed is not None and after.committed is not None and after.committed < before.committed:
            return Judgement(Verdict.REWIND, f"the committed offset went back from {before.committed} to "
                                             f"{after.committed}")
    full = len(samples) >= thresholds.window
    unmoved = len(set(committed)) == 1
    if full and unmoved:
        span = _span(samples)
        where = "never committed" if committed[0] is None else f"committed offset stayed at {committed[0]}"
        if held_by_live_worker:
            return Judgement(Verdict.STALL, f"a live worker holds the partition, but its {where} for {span:.0f} s "
                                            f"while {current.lag_messages} messages wait")
        return Judgement(Verdict.STOP, f"no commit for {span:.0f} s while {current.lag_messages} messages wait, "
                                       "and no live worker holds the partition")
    seconds = current.lag_seconds
    if thresholds.err_seconds and seconds is not None and seconds > thresholds.err_seconds:
        return Judgement(Verdict.ERR, f"the oldest unconsumed message is {seconds:.0f} s old "
                                      f"(KCM_LAG_ERR_SECONDS={thresholds.err_seconds:g})")
    if full and all(b >= a for a, b in itertools.pairwise(lags)):
        return Judgement(Verdict.WARN, f"commits move, but the lag never fell over {_span(samples):.0f} s "
                                       f"({lags[0]} -> {lags[-1]} messages): the consumer does not keep up")
    if thresholds.warn_seconds and seconds is not None and seconds > thresholds.warn_seconds:
        return Judgement(Verdict.WARN, f"the oldest unconsumed message is {seconds:.0f} s old "
                                       f"(KCM_LAG_WARN_SECONDS={thresholds.warn_seconds:g})")
    return Judgement(Verdict.OK, "consuming" if full else f"lag {current.lag_messages}, "
                                                          f"{len(samples)} of {thresholds.window} samples so far")


def _partition_samples(window: Sequence[Sample], partition: int) -> list[tuple[float, PartitionSample]]:
    """The partition's samples, oldest first, from the newest run without a gap (a new partition starts fresh)."""
    found: list[tuple[float, PartitionSample]] = []
    for sample in reversed(window):
        value = sample.partitions.get(partition)
        if value is None:
            break
        found.append((sample.at, value))
    return list(reversed(found))


def error_increment(before: ProcessorErrors | None, after: ProcessorErrors, since_at: float) -> int:
    """New errors of one processor between two samples. Counters start at 0 with each worker process, so a
    replica is compared only with an earlier reading of the same process (its ``started_at``); a process started
    since ``since_at`` (the earlier sample) counts all it reports; the first sight of an older one is a baseline."""
    new = 0
    for replica, (started_at, count) in after.replicas.items():
        earlier = before.replicas.get(replica) if before is not None else None
        if earlier is not None and earlier[0] == started_at:
            new += max(count - earlier[1], 0)
        elif started_at >= since_at:
            new += count
    return new


def error_rates(window: Sequence[Sample]) -> dict[str, tuple[float, int, str]]:
    """Per processor id: ``(errors per second, errors, processor type)`` over the window (oldest first)."""
    if len(window) < 2 or window[-1].at <= window[0].at:
        return {}
    counts: dict[str, int] = {}
    types: dict[str, str] = {}
    for before, after in itertools.pairwise(window):
        for processor, errors in after.errors.items():
            counts[processor] = counts.get(processor, 0) + error_increment(before.errors.get(processor), errors,
                                                                           before.at)
            types[processor] = errors.processor_type
    span = window[-1].at - window[0].at
    return {processor: (count / span, count, types[processor]) for processor, count in counts.items()}


def judge_error_rate(window: Sequence[Sample], thresholds: Thresholds) -> str | None:
    """Why the consumer is WARN for its processors' errors (the worst one named), or None. Needs a full window,
    as the lag-trend WARN does, so one retry just after a start is not a rate."""
    if not thresholds.error_rate_warn or len(window) < thresholds.window:
        return None
    over = [(rate, count, processor, kind) for processor, (rate, count, kind) in error_rates(window).items()
            if rate > thresholds.error_rate_warn]
    if not over:
        return None
    rate, count, processor, kind = max(over)
    span = window[-1].at - window[0].at
    return (f"processor {processor} ({kind}) failed {count} times in {span:.0f} s ({rate:.2f} errors/s: retries, "
            f"dead-lettered and skipped messages; KCM_HEALTH_ERROR_RATE_WARN={thresholds.error_rate_warn:g})")


def judge_consumer(window: Sequence[Sample], thresholds: Thresholds, *, desired_running: bool,
                   replica_states: Iterable[tuple[int, str]] = (), held_partitions: Iterable[int] = (),
                   unavailable: str | None = None, failed_starts: Mapping[int, int] | None = None,
                   paused: bool = False) -> ConsumerJudgement:
    """``window``: the consumer's samples, oldest first. ``replica_states``: ``(replica, ProcessState value)``.
    ``failed_starts``: replica -> failed starts in a row (the state hash's ``retries``): a replica STARTING again
    after failed starts is still crash-looping, not recovered (its verdict must not flap between BACKOFFs).
    ``held_partitions``: the partitions a live worker reports in its heartbeat. ``unavailable``: why the newest
    sample could not be taken (the cluster is unreachable), which makes the verdict UNKNOWN, not a stale one.
    ``paused``: the desired state is paused; its workers hold their partitions and commit nothing, which is no
    STALL: the verdict is PAUSED unless a replica is failing (a crash loop still alarms)."""
    held = set(held_partitions)
    partitions = {}
    if window and unavailable is None:
        partitions = {p: judge_partition(_partition_samples(window, p), thresholds, held_by_live_worker=p in held)
                      for p in sorted(window[-1].partitions)}
    if not desired_running:
        return ConsumerJudgement(Verdict.STOPPED, "the desired state is stopped (lag is still measured)", partitions)
    for replica, state in sorted(replica_states):
        if state in FAILING_REPLICA_STATES:
            return ConsumerJudgement(Verdict.ERR, f"replica {replica} {FAILING_REPLICA_STATES[state]}", partitions)
        retries = (failed_starts or {}).get(replica, 0)
        if state == "STARTING" and retries > 0:
            return ConsumerJudgement(Verdict.ERR, f"replica {replica} is crash-looping (starting again after "
                                                  f"{retries} failed start{'s' if retries > 1 else ''})", partitions)
    if paused:
        return ConsumerJudgement(Verdict.PAUSED, "the desired state is paused (lag is still measured)", partitions)
    if unavailable is not None:
        return ConsumerJudgement(Verdict.UNKNOWN, unavailable, partitions)
    if not window:
        return ConsumerJudgement(Verdict.UNKNOWN, "not sampled yet", partitions)
    if not partitions:
        return ConsumerJudgement(Verdict.UNKNOWN, "the topic has no partitions (does it exist?)", partitions)
    worst_partition, worst = max(partitions.items(), key=lambda item: PARTITION_SEVERITY.index(item[1].verdict))
    verdict = Verdict.ERR if worst.verdict in (Verdict.STOP, Verdict.STALL, Verdict.REWIND) else worst.verdict
    failing = judge_error_rate(window, thresholds) if verdict in (Verdict.OK, Verdict.WARN) else None
    if worst.verdict == Verdict.OK:
        if failing is not None:
            return ConsumerJudgement(Verdict.WARN, failing, partitions)
        return ConsumerJudgement(Verdict.OK, "every partition is OK", partitions)
    reason = f"partition {worst_partition} is {worst.verdict.value}: {worst.reason}"
    return ConsumerJudgement(verdict, reason if failing is None else f"{reason}; {failing}", partitions)


def since(previous: tuple[str, float] | None, verdict: Verdict, now: float) -> float:
    """When the current verdict began: kept from ``previous`` ``(verdict, since)`` while the verdict holds."""
    if previous is not None and previous[0] == verdict.value:
        return previous[1]
    return now
