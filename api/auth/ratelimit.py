"""Rate limits per principal (per client address when anonymous) with Flask-Limiter on Redis.

Two application-wide buckets per principal: reads (GET, HEAD, OPTIONS; KCM_RATE_LIMIT_READ) and writes
(KCM_RATE_LIMIT_WRITE). Fixed windows: one Redis round trip per request. A Redis that is down makes each
process count in its own memory until Redis answers again; it never fails a request. Over the limit: 429 in the
one error body with Retry-After and X-RateLimit-Limit/-Remaining/-Reset (only then: headers on every response
would cost a second round trip). KCM_RATE_LIMIT_ENABLED=false turns it off (the benchmark's comparison).

Flask-Limiter names its own Redis keys (``LIMITS:LIMITER/...``), as rq does."""
from __future__ import annotations

import logging
import time

from flask import Flask, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from limits import parse_many

from api.auth.current import current_principal
from api.auth.declarations import UNLIMITED_PATHS, normalised
from api.auth.principal import ANONYMOUS
from schema.settings import Settings, SettingsError

log = logging.getLogger("kcm.api.ratelimit")

READ_METHODS = ("GET", "HEAD", "OPTIONS")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
REDIS_TIMEOUT_SECONDS = 0.5


def rate_key() -> str:
    principal = current_principal()
    if principal.kind == ANONYMOUS:
        return f"address:{request.remote_addr}"
    return principal.rate_key


def _check(name: str, value: str) -> str:
    try:
        parse_many(value)
    except ValueError:
        raise SettingsError(f"KCM_{name.upper()}={value!r} is not a rate limit such as '600/minute'") from None
    return value


def install_rate_limits(app: Flask, settings: Settings, render_error) -> Limiter | None:
    if not settings.rate_limit_enabled:
        log.warning("rate limiting is OFF (KCM_RATE_LIMIT_ENABLED=false)")
        return None
    limiter = Limiter(
        rate_key,
        application_limits=[
            ApplicationLimit(_check("rate_limit_read", settings.rate_limit_read), scope="read",
                             methods=READ_METHODS),
            ApplicationLimit(_check("rate_limit_write", settings.rate_limit_write), scope="write",
                             methods=WRITE_METHODS),
        ],
        storage_uri=settings.redis_url,
        storage_options={"socket_connect_timeout": REDIS_TIMEOUT_SECONDS, "socket_timeout": REDIS_TIMEOUT_SECONDS},
        strategy="fixed-window",
        headers_enabled=False,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    limiter.request_filter(lambda: normalised(request.path) in UNLIMITED_PATHS)
    limiter.init_app(app)

    def too_many_requests(error: RateLimitExceeded):
        headers, retry_after = {}, 1
        try:
            current = limiter.current_limit
            if current is not None:
                reset_at = int(current.reset_at)
                retry_after = max(1, reset_at - int(time.time()))
                headers = {"X-RateLimit-Limit": str(current.limit.amount), "X-RateLimit-Remaining": "0",
                           "X-RateLimit-Reset": str(reset_at)}
        except Exception:  # the storage went away between the hit and here: the 429 stands without the figures
            log.warning("rate-limit window unreadable for the 429 headers", exc_info=True)
        headers["Retry-After"] = str(retry_after)
        message = f"Too many requests: the limit is {error.limit.limit}; retry after {retry_after} s."
        return render_error(429, message), 429, headers

    app.register_error_handler(RateLimitExceeded, too_many_requests)
    return limiter
