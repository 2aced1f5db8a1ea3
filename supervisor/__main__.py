"""``python -m supervisor``: the kcm supervisor daemon (see docs/runtime.md).

Exit codes: 0 stopped on SIGTERM/SIGINT (its slots handed over, workers stopped gracefully first); 78 bad settings;
73 another supervisor already runs on this SQLite database (only one may).
"""
from __future__ import annotations

import logging
import sys

import redis

from schema.db import make_engine, make_session_factory, redacted
from schema.exits import EXIT_CONFIG
from schema.logs import setup_from_env, setup_logging
from schema.settings import Settings
from supervisor.daemon import Supervisor

log = logging.getLogger("kcm.supervisor")


def session_limits(settings: Settings) -> dict:
    """PostgreSQL: a supervisor frozen inside a transaction (SIGSTOP, a paused VM) must not hold its row locks for
    longer than its leases last, and no statement of ours may wait on another's locks for long: the loop would
    stall and its own leases lapse (supervisor/slots.py)."""
    if not settings.database_url.startswith("postgresql"):
        return {}
    ttl_ms = int(settings.supervisor_lease_ttl * 1000)
    return {"connect_args": {"options": f"-c idle_in_transaction_session_timeout={ttl_ms} "
                                        f"-c lock_timeout={max(ttl_ms // 4, 250)}"}}


def main() -> int:
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        setup_from_env("supervisor", level="INFO")
        log.error("SettingsError: %s", exc)
        return EXIT_CONFIG
    setup_logging("supervisor", level=settings.log_level, fmt=settings.log_format)  # schema/logs.py
    log.info("SupervisorConfig database=%s redis=%s", redacted(settings.database_url), redacted(settings.redis_url))
    engine = make_engine(settings.database_url, **session_limits(settings))
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    supervisor = Supervisor(settings, make_session_factory(engine), client)
    supervisor.install_signal_handlers()
    try:
        return supervisor.run()
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
