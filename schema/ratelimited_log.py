"""Outage logging: the first failure, then one summary per interval, then the recovery.

A dependency that is down (Redis, a target database, a broker) fails every call of a loop; logging each one
floods the log (hundreds of identical lines a minute) and hides the one line an operator needs. ``Outage``
turns a stream of failures of one named thing into three kinds of lines:

    <Name>: <what>: <error>                                   the first failure, at once
    <Name>: <what>: still failing, <n> failure(s) in <s> s: <last error>   at most once per interval
    <Name>Recovered: <what>: back after <s> s, <n> failure(s)  the first success after a failure

Standard library only: the supervisor, the worker and the pipeline use the same helper (one rule, one module).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

SUMMARY_SECONDS = 60.0


class Outage:
    """One named thing that can fail repeatedly (``Outage(log, "RedisUnavailable", "heartbeat")``)."""

    def __init__(self, log: logging.Logger, name: str, what: str, *, interval: float = SUMMARY_SECONDS,
                 level: int = logging.WARNING, clock: Callable[[], float] = time.monotonic):
        self.log = log
        self.name = name
        self.what = what
        self.interval = interval
        self.level = level
        self.clock = clock
        self.since: float | None = None  # when the current outage began (None: healthy)
        self.failures = 0  # failures since the outage began
        self._unreported = 0  # failures since the last line
        self._next_summary = 0.0

    @property
    def failing(self) -> bool:
        return self.since is not None

    def failed(self, error: object) -> None:
        now = self.clock()
        self.failures += 1
        if self.since is None:
            self.since = now
            self._next_summary = now + self.interval
            self._unreported = 0
            self.log.log(self.level, "%s: %s: %s", self.name, self.what, error)
            return
        self._unreported += 1
        if now >= self._next_summary:
            self.log.log(self.level, "%s: %s: still failing, %d failure(s) in %.0f s: %s", self.name, self.what,
                         self._unreported, now - self._next_summary + self.interval, error)
            self._unreported = 0
            self._next_summary = now + self.interval

    def recovered(self) -> None:
        """Call after every success: logs once when an outage ends, costs a comparison otherwise."""
        if self.since is None:
            return
        self.log.info("%sRecovered: %s: back after %.1f s, %d failure(s)", self.name.removesuffix("Unavailable")
                      .removesuffix("Failed"), self.what, self.clock() - self.since, self.failures)
        self.since = None
        self.failures = 0
        self._unreported = 0


class Outages:
    """A family of ``Outage`` keyed by what failed (the supervisor's Redis calls: one per call site)."""

    def __init__(self, log: logging.Logger, name: str, *, interval: float = SUMMARY_SECONDS,
                 level: int = logging.WARNING, clock: Callable[[], float] = time.monotonic):
        self.log, self.name, self.interval, self.level, self.clock = log, name, interval, level, clock
        self._by_what: dict[str, Outage] = {}

    def __getitem__(self, what: str) -> Outage:
        outage = self._by_what.get(what)
        if outage is None:
            outage = self._by_what[what] = Outage(self.log, self.name, what, interval=self.interval,
                                                  level=self.level, clock=self.clock)
        return outage

    @property
    def failing(self) -> bool:
        return any(o.failing for o in self._by_what.values())
