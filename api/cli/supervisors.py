"""``kcm supervisors``: the live supervisors, from their heartbeats."""
from __future__ import annotations

import click

from api.cli import output
from api.cli.client import Api, api_options

COLUMNS = ("id", "host", "pid", "replicas", "started_at", "last_heartbeat")


@click.command("supervisors")
@api_options
def supervisors(api: Api, fmt: str) -> None:
    """Every live supervisor: host, pid, replicas held, last heartbeat."""
    output.emit(api.get("/supervisors/"), fmt, columns=COLUMNS)
