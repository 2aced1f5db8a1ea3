"""``rq worker -c schema.rq_logging ...`` (the Procfile's ``deadletters``): rq imports its config module before it
sets up logging, and adds no handler of its own once one exists; so importing this gives the rq worker and
the dead-letter jobs kcm's log format (schema/logs.py, KCM_LOG_FORMAT). It holds no rq setting."""
from __future__ import annotations

from schema.logs import setup_from_env

setup_from_env("deadletters")
