"""Outage logs: the first failure, a summary per interval, the recovery; never a line per failure."""
from __future__ import annotations

import logging

from schema.ratelimited_log import Outage
from tests.unit.runtime.test_replica_machine import FakeClock


def test_two_hundred_failures_in_thirty_seconds_are_two_lines(caplog):
    clock = FakeClock()
    outage = Outage(logging.getLogger("t"), "RedisUnavailable", "heartbeat", interval=60, clock=clock)
    with caplog.at_level(logging.INFO, logger="t"):
        for _ in range(200):
            outage.failed("Connection refused")
            clock.advance(0.15)
        outage.recovered()
        outage.recovered()  # healthy: silent
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["RedisUnavailable: heartbeat: Connection refused",
                     "RedisRecovered: heartbeat: back after 30.0 s, 200 failure(s)"]


def test_a_long_outage_is_summarised_once_per_interval(caplog):
    clock = FakeClock()
    outage = Outage(logging.getLogger("t"), "RedisUnavailable", "lease", interval=60, clock=clock)
    with caplog.at_level(logging.INFO, logger="t"):
        for _ in range(300):  # 5 minutes, one failure a second
            outage.failed("timeout")
            clock.advance(1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5 and "still failing, 60 failure(s) in 60 s: timeout" in lines[1]
