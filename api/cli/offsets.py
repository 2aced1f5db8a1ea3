"""``kcm offsets show|reset|delete``: a consumer group's committed offsets; a reset is a dry run unless --execute."""
from __future__ import annotations

import click

from api.cli import output
from api.cli.client import Api, api_options, path

RESET_TARGETS = ("earliest", "latest", "timestamp", "offset", "shift")
MOVE_COLUMNS = ("partition", "from", "to")


def offsets_text(body) -> str:
    """A list of partitions, or a record whose ``partitions`` is one: scalar fields first, then the table."""
    if isinstance(body, list):
        return output.table(body, list(body[0])) if body else "(no partitions)"
    partitions = body.get("partitions") if isinstance(body, dict) else None
    if not isinstance(partitions, list):
        return output.render(body, "table")
    head = {k: v for k, v in body.items() if k != "partitions"}
    text = output.fields(head) + "\n\n" if head else ""
    return text + (output.table(partitions, list(partitions[0])) if partitions else "(no partitions)")


@click.group("offsets")
def offsets() -> None:
    """A consumer's committed offsets (CONSUMER is a name or an id)."""


@offsets.command("show")
@api_options
@click.argument("consumer")
def show(api: Api, fmt: str, consumer: str) -> None:
    """CONSUMER's group offsets per partition."""
    output.emit(api.get(path("consumers", consumer, "offsets")), fmt, text=offsets_text)


@offsets.command("reset")
@api_options
@click.argument("consumer")
@click.option("--to", "to", type=click.Choice(RESET_TARGETS), required=True, help="Where the offsets go.")
@click.option("--timestamp", help="With --to timestamp: the first message at or after this time (ISO-8601).")
@click.option("--duration", help="With --to timestamp: this long ago instead (ISO-8601 duration, e.g. PT1H).")
@click.option("--offset", type=int, help="With --to offset: this offset.")
@click.option("--shift", type=int, help="With --to shift: move by this many messages (negative: back).")
@click.option("--partition", "partitions", type=click.IntRange(min=0), multiple=True,
              help="Only this partition (repeat for several; default all).")
@click.option("--execute", is_flag=True, help="Really move the offsets (without it: a dry run that changes nothing).")
def reset(api: Api, fmt: str, consumer: str, to: str, timestamp, duration, offset, shift, partitions,
          execute: bool) -> None:
    """Move CONSUMER's committed offsets; shows each partition's from -> to. A dry run unless --execute."""
    body = {"to": to, "dry_run": not execute}
    for name, value in (("timestamp", timestamp), ("duration", duration), ("offset", offset), ("shift", shift)):
        if value is not None:
            body[name] = value
    if partitions:
        body["partitions"] = list(partitions)
    result = api.post(path("consumers", consumer, "offsets", "reset"), body)

    def text(r: dict) -> str:
        moves = r.get("partitions") or []
        head = ("dry run, nothing changed (add --execute to move them):" if r.get("dry_run", not execute)
                else f"offsets of {consumer} moved:")
        return head + "\n" + (output.table(moves, MOVE_COLUMNS) if moves else "(no partitions)")

    output.emit(result, fmt, text=text)


@offsets.command("delete")
@api_options
@click.argument("consumer")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(api: Api, fmt: str, consumer: str, yes: bool) -> None:
    """Delete CONSUMER's committed offsets (it starts again from auto_offset_reset)."""
    if not yes:
        click.confirm(f"Delete the committed offsets of {consumer}?", abort=True)
    body = api.delete(path("consumers", consumer, "offsets"))

    def text(r: dict) -> str:
        moves = r.get("partitions") or []
        return (f"committed offsets of {consumer} deleted (the next start follows auto_offset_reset):\n"
                + (output.table(moves, MOVE_COLUMNS) if moves else "(no partitions)"))

    output.emit(body, fmt, text=text)
