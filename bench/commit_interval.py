"""Benchmark: what committing offsets every second costs. One kcm worker (``python -m workers``, file_sink raw, the
same pre-filled topic as ``throughput_file``) with ``KCM_COMMIT_INTERVAL_MS=1000`` (kcm's default: a kill -9
redelivers about one second of traffic) against ``5000`` (librdkafka's default), in the same run, sides
alternating. The worker is run directly, without the supervisor, because the interval is a process setting
(``bench.sides``)."""
from __future__ import annotations

from bench.results import Result
from bench.sides import compare_setting

INTERVALS_MS = (5000, 1000)  # the baseline first: the ratio is 1000 ms over 5000 ms
TARGET = 0.98  # throughput drop of at most 2 %


def commit_interval(h) -> Result:
    return compare_setting(h, "commit_interval", "Commit interval, file sink", "the same worker committing every "
                           "5000 ms (librdkafka's default)", TARGET, variable="KCM_COMMIT_INTERVAL_MS",
                           sides={f"ms{ms}": ms for ms in INTERVALS_MS}, slug="commit", figure="commit_interval_ms",
                           params={"intervals_ms": list(INTERVALS_MS)},
                           notes=["Why 1000 ms: a kill -9 redelivers at most about one commit interval of traffic "
                                  "plus the batch in flight (tests/integration/processors/test_kill9_e2e.py, the "
                                  "paced-stream test)."])
