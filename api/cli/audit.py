"""``kcm audit``: the audit trail, newest first (admins)."""
from __future__ import annotations

import click

from api.cli import output
from api.cli.client import Api, api_options

COLUMNS = ("occurred_at", "principal_name", "action", "target_type", "target_id", "outcome", "status_code",
           "detail")


@click.command("audit")
@api_options
@click.option("--target-type", help="consumer, processor, api_key, dead_letter.")
@click.option("--target-id", help="The target's id.")
@click.option("--principal", help="An API key's id or name, or a JWT subject.")
@click.option("--action", help="e.g. consumer.update.")
@click.option("--outcome", type=click.Choice(("allowed", "denied")))
@click.option("--since", metavar="ISO-8601", help="From this time (with its UTC offset), inclusive.")
@click.option("--until", metavar="ISO-8601", help="Up to this time, exclusive.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many events.")
def audit(api: Api, fmt: str, limit: int, **filters) -> None:
    """Who did what: every mutating call, allowed or denied, and failed sign-ins."""
    output.emit(api.pages("/audit/", limit=limit, **filters), fmt, columns=COLUMNS)
