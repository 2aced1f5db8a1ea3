"""Rate limits per principal (per client address when anonymous), shared by every API process through Redis.

Two application-wide buckets per principal: reads (GET, HEAD, OPTIONS; KCM_RATE_LIMIT_READ) and writes
(KCM_RATE_LIMIT_WRITE), fixed windows aligned to the clock. The ``limits`` library (Flask-Limiter's engine) parses
the settings, builds the Redis storage from KCM_REDIS_URL and names the keys (``LIMITS:LIMITER/...``, as rq
names its own); window_counter.py counts each principal's hits in memory and adds them to Redis in batches (a
documented overshoot bound, docs/security.md), so a request costs microseconds, not a round trip. Anonymous
callers (token guessers) are counted exactly, every hit in Redis. Flask-Limiter's own request hooks cost
~90 µs of Python per request even with no round trip (BENCHMARKS.md), more than the whole list request may
spend on security, so they are not installed.

A Redis that is down makes each process count in its own memory until Redis answers again; it never fails a
request. Over the limit: 429 in the one error body with Retry-After and X-RateLimit-Limit/-Remaining/-Reset
(only then). KCM_RATE_LIMIT_ENABLED=false turns it off (the benchmark's comparison)."""
from __future__ import annotations

import logging
import time

from flask import Flask
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string

from api.auth.principal import ANONYMOUS, Principal
from api.auth.window_counter import WindowCounter
from schema.settings import Settings, SettingsError

log = logging.getLogger("kcm.api.ratelimit")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REDIS_TIMEOUT_SECONDS = 0.5


class RateLimited(Exception):
    """Over the limit: rendered as the 429 (``install_rate_limits``)."""

    def __init__(self, limit: RateLimitItem, reset_at: int):
        super().__init__(str(limit))
        self.limit, self.reset_at = limit, reset_at


def _limit(name: str, value: str) -> RateLimitItem:
    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if len(items) != 1:
        raise SettingsError(f"KCM_{name.upper()}={value!r} is not a rate limit such as '600/minute'")
    return items[0]


class RateLimits:
    """The two buckets and the check ``guard.py`` runs on every request once it knows the principal."""

    def __init__(self, settings: Settings):
        storage = storage_from_string(settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                      socket_timeout=REDIS_TIMEOUT_SECONDS)
        self.reads = WindowCounter(_limit("rate_limit_read", settings.rate_limit_read), "read", storage)
        self.writes = WindowCounter(_limit("rate_limit_write", settings.rate_limit_write), "write", storage)

    def check(self, method: str, principal: Principal, remote_addr: str | None) -> None:
        """Count the request; RateLimited when it is over its bucket's limit."""
        counter = self.reads if method in READ_METHODS else self.writes
        anonymous = principal.kind == ANONYMOUS
        key = f"address:{remote_addr}" if anonymous else principal.rate_key
        if not counter.hit(key, exact=anonymous):
            raise RateLimited(counter.item, counter.window_end(counter.clock()))


def install_rate_limits(app: Flask, settings: Settings, render_error) -> RateLimits | None:
    """The limits of ``settings`` (None when turned off) and the 429 handler."""
    if not settings.rate_limit_enabled:
        log.warning("rate limiting is OFF (KCM_RATE_LIMIT_ENABLED=false)")
        return None
    limits = RateLimits(settings)

    def too_many_requests(error: RateLimited):
        retry_after = max(1, error.reset_at - int(time.time()))
        headers = {"Retry-After": str(retry_after), "X-RateLimit-Limit": str(error.limit.amount),
                   "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(error.reset_at)}
        message = f"Too many requests: the limit is {error.limit}; retry after {retry_after} s."
        return render_error(429, message), 429, headers

    app.register_error_handler(RateLimited, too_many_requests)
    return limits
