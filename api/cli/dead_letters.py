"""``kcm dead-letters list|show|replay|discard``: messages a processor gave up on (rq jobs), per consumer."""
from __future__ import annotations

import click

from api.cli import output
from api.cli.client import Api, api_options, path

COLUMNS = ("id", "status", "processor_type", "partition", "offset", "attempts", "failed_at", "error_class",
           "error_message")
HISTORY_COLUMNS = ("at", "event", "detail")


def letter_text(letter: dict) -> str:
    head = output.fields(letter, [k for k in letter if k != "history"])
    history = letter.get("history") or []
    return head + "\n\nhistory:\n" + (output.table(history, HISTORY_COLUMNS) if history else "(none)")


@click.group("dead-letters")
def dead_letters() -> None:
    """A consumer's dead letters (CONSUMER is a name or an id)."""


@dead_letters.command("list")
@api_options
@click.argument("consumer")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many, newest first (default all).")
def list_letters(api: Api, fmt: str, consumer: str, limit: int | None) -> None:
    """CONSUMER's dead letters, newest first, with their error."""
    output.emit(api.pages(path("consumers", consumer, "dead-letters"), limit=limit), fmt, columns=COLUMNS)


@dead_letters.command("show")
@api_options
@click.argument("consumer")
@click.argument("dead_letter")
def show(api: Api, fmt: str, consumer: str, dead_letter: str) -> None:
    """One dead letter with its history."""
    output.emit(api.get(path("consumers", consumer, "dead-letters", dead_letter)), fmt, text=letter_text)


@dead_letters.command("replay")
@api_options
@click.argument("consumer")
@click.argument("dead_letter", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Every dead letter of CONSUMER that can be replayed.")
def replay(api: Api, fmt: str, consumer: str, dead_letter: str | None, replay_all: bool) -> None:
    """Deliver DEAD_LETTER (or --all) again, with its processor's current configuration."""
    if bool(dead_letter) == replay_all:
        raise click.UsageError("give one DEAD_LETTER id, or --all")
    if replay_all:
        body = api.post(path("consumers", consumer, "dead-letters", "replay"))

        def text(b: dict) -> str:
            lines = [f"replayed {b['replayed']} dead letter(s) of {consumer}"]
            lines += [f"  refused {r['id']}: {r['reason']}" for r in b["refused"]]
            return "\n".join(lines)

        output.emit(body, fmt, text=text)
        return
    body = api.post(path("consumers", consumer, "dead-letters", dead_letter, "replay"))
    output.emit(body, fmt, text=lambda b: f"dead letter {b['id']} replay requested (status {b['status']})")


@dead_letters.command("discard")
@api_options
@click.argument("consumer")
@click.argument("dead_letter")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def discard(api: Api, fmt: str, consumer: str, dead_letter: str, yes: bool) -> None:
    """Give DEAD_LETTER's message up for good (the one lossy action)."""
    if not yes:
        click.confirm(f"Discard dead letter {dead_letter}? Its message is lost.", abort=True)
    api.delete(path("consumers", consumer, "dead-letters", dead_letter))
    output.emit({"discarded": dead_letter}, fmt, text=lambda _: f"dead letter {dead_letter} discarded")
