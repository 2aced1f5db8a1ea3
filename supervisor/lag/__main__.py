"""``python -m supervisor.lag``: sample every consumer's lag every ``KCM_LAG_INTERVAL`` seconds (docs/monitoring.md).

Exit codes: 0 stopped on SIGTERM/SIGINT; 78 bad settings. A sample that fails (Kafka, the database or Redis
down) is logged and retried on the next interval; the monitor itself keeps running.
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
import time

import redis
import sqlalchemy.exc

from schema.db import make_engine, make_session_factory, redacted
from schema.exits import EXIT_CONFIG
from schema.logs import setup_from_env, setup_logging
from schema.settings import Settings
from supervisor.lag.monitor import LagMonitor
from supervisor.lag.webhook import refusal

log = logging.getLogger("kcm.lag")


def main() -> int:
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        setup_from_env("lag")
        log.error("SettingsError: %s", exc)
        return EXIT_CONFIG
    setup_logging("lag", level=settings.log_level, fmt=settings.log_format)
    refused = refusal(settings.alert_webhook_url, settings) if settings.alert_webhook_url else None
    if refused is not None:  # names the rule, never the URL
        log.error("SettingsError: %s", refused)
        return EXIT_CONFIG
    log.info("LagMonitorConfig database=%s redis=%s interval=%gs window=%d webhook_alerts=%s",
             redacted(settings.database_url), redacted(settings.redis_url), settings.lag_interval,
             settings.lag_window, "on" if settings.alert_webhook_url else "off")
    engine = make_engine(settings.database_url)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    monitor = LagMonitor(settings, make_session_factory(engine), client)
    stop = threading.Event()

    def on_signal(signum, _frame):  # only record it: the loop acts
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    failing = None
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                monitor.sample_once()
                if failing is not None:
                    log.info("LagSampleRecovered after %s", failing)
                failing = None
            except (redis.RedisError, sqlalchemy.exc.SQLAlchemyError) as exc:
                if failing != type(exc).__name__:  # once per outage, not once per interval
                    log.warning("LagSampleFailed: %s: %s", type(exc).__name__, (str(exc).splitlines() or [""])[0])
                failing = type(exc).__name__
            stop.wait(max(settings.lag_interval - (time.monotonic() - started), 0.05))
    finally:
        try:
            monitor.store.withdraw()
        except redis.RedisError:
            pass
        engine.dispose()
    log.info("LagMonitorStopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
