"""``kcm consumers``: list, read, create, delete and control consumers (CONSUMER is a name or an id).

The group's other commands live in their own modules (apply/edit, status/lag/errors, versions) and are added
by ``api.cli.app``.
"""
from __future__ import annotations

import click

from api.cli import documents, output
from api.cli.client import Api, api_options, path
from api.cli.errors import CommandFailed

LIST_COLUMNS = ("name", "id", "topic", "consumer_group", "replicas", "desired_state", "status", "generation")
RECORD_KEYS = ("id", "name", "topic", "consumer_group", "brokers", "client_id", "replicas", "auto_offset_reset",
               "desired_state", "status", "generation", "created_at", "updated_at")
PROCESSOR_COLUMNS = ("position", "processor_type", "on_error", "id", "config")


def brokers(consumer: dict) -> str:
    if consumer.get("bootstrap_servers"):
        return ",".join(consumer["bootstrap_servers"])
    return f"{consumer.get('broker_ip')}:{consumer.get('broker_port')}"


def consumer_text(consumer: dict) -> str:
    text = output.fields({**consumer, "brokers": brokers(consumer)}, RECORD_KEYS)
    if consumer.get("security"):
        text += "\n" + output.fields({"security": consumer["security"]})
    processors = consumer.get("downstream_processors") or []
    return text + "\n\nprocessors:\n" + (output.table(processors, PROCESSOR_COLUMNS) if processors else "(none)")


@click.group("consumers")
def consumers() -> None:
    """Consumers: CONSUMER is a consumer's name or id."""


@consumers.command("list")
@api_options
@click.option("--status", type=click.Choice(("ACTIVE", "INACTIVE", "ERROR")), help="Only this status.")
@click.option("--desired-state", help="Only this desired state (running, stopped, paused).")
@click.option("--topic", help="Only consumers of this topic.")
@click.option("--group", "consumer_group", help="Only this consumer group.")
@click.option("--name", help="Only the consumer with this name.")
def list_consumers(api: Api, fmt: str, **filters) -> None:
    """Every consumer (all pages), oldest first."""
    output.emit(api.pages("/consumers/", **filters), fmt, columns=LIST_COLUMNS)


@consumers.command("get")
@api_options
@click.argument("consumer")
def get(api: Api, fmt: str, consumer: str) -> None:
    """One consumer; `-o yaml` prints a document `kcm consumers apply -f` takes back."""
    output.emit(api.get(path("consumers", consumer)), fmt, text=consumer_text)


@consumers.command("create")
@api_options
@documents.file_option
@click.option("--validate", is_flag=True, help="Create only if every check of `kcm consumers validate` passes.")
@click.option("--start", is_flag=True, help="Start it once created.")
def create(api: Api, fmt: str, document, validate: bool, start: bool) -> None:
    """Create a consumer from a YAML or JSON document (the API's body); a name already taken is an error."""
    body = documents.create_body(documents.read(document))
    created = api.post("/consumers/", body, **({"validate": "true"} if validate else {}))
    if start:
        api.post(path("consumers", created["id"], "start"))
        created = api.get(path("consumers", created["id"]))
    output.emit(created, fmt, text=lambda c: f"created consumer {c.get('name') or c['id']} (id {c['id']}, "
                                             f"desired state {c['desired_state']})")


@consumers.command("delete")
@api_options
@click.argument("consumer")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(api: Api, fmt: str, consumer: str, yes: bool) -> None:
    """Delete CONSUMER, its processors and its dead letters (its workers stop)."""
    if not yes:
        click.confirm(f"Delete consumer {consumer}, its processors and its dead letters?", abort=True)
    api.delete(path("consumers", consumer))
    output.emit({"deleted": consumer}, fmt, text=lambda _: f"deleted consumer {consumer}")


def control(action: str, help_text: str):
    @api_options
    @click.argument("consumer")
    def command(api: Api, fmt: str, consumer: str) -> None:
        result = api.post(path("consumers", consumer, action))
        output.emit(result, fmt, text=lambda r: f"{consumer}: {r['message']} (desired state "
                                                f"{r['desired_state']}, generation {r['generation']})")

    command.__doc__ = help_text
    return consumers.command(action)(command)


start = control("start", "Desired state running: the supervisor starts its replicas.")
stop = control("stop", "Desired state stopped: its replicas finish their batch, commit and exit.")
restart = control("restart", "New generation, running: fresh processes (also clears a FATAL crash loop).")
pause = control("pause", "Desired state paused: replicas stay in the group but fetch nothing.")
resume = control("resume", "From paused back to running.")


@consumers.command("validate")
@api_options
@documents.file_option
def validate(api: Api, fmt: str, document) -> None:
    """Check a document as create would, then connect to its cluster, topic and processors' targets.

    Creates nothing; exit 1 when a check fails."""
    result = api.post("/consumers/validate/", documents.create_body(documents.read(document)))
    output.emit(result, fmt, text=lambda r: output.table(r["checks"], ("name", "ok", "detail")))
    failed = [check["name"] for check in result["checks"] if not check["ok"]]
    if failed:
        raise CommandFailed(f"{len(failed)} check(s) failed: {', '.join(failed)}")
