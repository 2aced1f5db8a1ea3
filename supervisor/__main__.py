"""``python -m supervisor``: the kcm supervisor daemon (see docs/runtime.md).

Exit codes: 0 stopped on SIGTERM/SIGINT (workers stopped gracefully first); 78 bad settings.
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


def main() -> int:
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        setup_from_env("supervisor", level="INFO")
        log.error("SettingsError: %s", exc)
        return EXIT_CONFIG
    setup_logging("supervisor", level=settings.log_level, fmt=settings.log_format)  # schema/logs.py
    log.info("SupervisorConfig database=%s redis=%s", redacted(settings.database_url), redacted(settings.redis_url))
    engine = make_engine(settings.database_url)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    supervisor = Supervisor(settings, make_session_factory(engine), client)
    supervisor.install_signal_handlers()
    try:
        return supervisor.run()
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
