"""``kcm consumers apply`` and ``edit``: make a consumer equal to a document, by name, in the fewest calls.

Reconciliation (``plan``): the consumer's fields that differ go in one PATCH (fields the document leaves out
are left as they are; ``downstream_processors`` is never sent in it, that would replace every processor). Then
processors are matched by their place in the pipeline: the document's i-th processor against the consumer's
i-th. The same type is the same processor, PATCHed where config, on_error or position differ (its id stays, so
its dead letters stay replayable); another type is a different processor: the old one is removed, the new one
added. Extra processors are added, missing ones removed. A document without ``downstream_processors`` leaves
them alone; a processor without ``position`` gets its index, without ``on_error``/``config`` the API's defaults.
Every call is one version (and, for a running consumer, one new generation).
"""
from __future__ import annotations

import tempfile
from typing import NamedTuple

import click

from api.cli import documents, output
from api.cli.client import Api, api_options, path
from api.cli.errors import BadInput

PROCESSOR_FIELDS = ("config", "on_error", "position")


class Step(NamedTuple):
    method: str
    route: tuple  # path parts after the consumer id
    body: dict | None
    summary: str


def _servers(value):
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def consumer_changes(current: dict, desired: dict) -> dict:
    changes = {}
    for name, value in desired.items():
        if name == "downstream_processors":
            continue
        if name == "bootstrap_servers":
            value = _servers(value)
        if current.get(name) != value:
            changes[name] = value
    return changes


def plan(current: dict, desired: dict) -> list[Step]:
    """The calls that make ``current`` (a GET of the consumer) equal to ``desired`` (writable fields)."""
    steps = []
    changes = consumer_changes(current, desired)
    if changes:
        steps.append(Step("PATCH", (), changes, f"changed {', '.join(changes)}"))
    wanted = desired.get("downstream_processors")
    if wanted is None:
        return steps
    if not isinstance(wanted, list) or not all(isinstance(p, dict) and p.get("processor_type") for p in wanted):
        raise BadInput("downstream_processors must be a list of processors, each with a processor_type")
    existing = current.get("downstream_processors") or []
    removals, updates, additions = [], [], []
    for index, want in enumerate(wanted):
        spec = {**documents.PROCESSOR_DEFAULTS, "position": index, **want}
        label = f"processor {index} ({spec['processor_type']})"
        have = existing[index] if index < len(existing) else None
        if have is not None and have["processor_type"] == spec["processor_type"]:
            diff = {k: spec[k] for k in PROCESSOR_FIELDS if k in spec and have.get(k) != spec[k]}
            if diff:
                updates.append(Step("PATCH", ("processors", have["id"]), diff,
                                    f"changed {label}: {', '.join(diff)}"))
            continue
        if have is not None:
            removals.append(Step("DELETE", ("processors", have["id"]), None,
                                 f"removed processor {index} ({have['processor_type']})"))
        additions.append(Step("POST", ("processors",), spec, f"added {label}"))
    for index, have in enumerate(existing[len(wanted):], start=len(wanted)):
        removals.append(Step("DELETE", ("processors", have["id"]), None,
                             f"removed processor {index} ({have['processor_type']})"))
    return steps + removals + updates + additions


def find(api: Api, name: str) -> dict | None:
    found = api.pages("/consumers/", name=name)
    return found[0] if found else None


def run(api: Api, consumer_id: str, steps: list[Step]) -> None:
    for step in steps:
        api.call(step.method, path("consumers", consumer_id, *step.route), body=step.body)


def report(name: str, outcome: str, steps: list[Step], fmt: str, consumer: dict | None, dry_run: bool) -> None:
    if fmt != "table":
        output.emit({"name": name, "outcome": outcome, "dry_run": dry_run,
                     "changes": [s.summary for s in steps], "consumer": consumer}, fmt)
        return
    prefix = "would be " if dry_run and outcome != "unchanged" else ""
    click.echo(f"consumer {name} {prefix}{outcome}")
    for step in steps:
        click.echo(f"  {step.summary}")


def apply_document(api: Api, document: dict, fmt: str, *, dry_run: bool, current: dict | None = None) -> None:
    """Create the consumer, or reconcile ``current`` (by default: the consumer named like the document)."""
    desired = documents.writable(document)
    name = desired.get("name")
    if current is None:
        if not name or not isinstance(name, str):
            raise BadInput("apply finds the consumer by its name: the document needs a 'name'")
        current = find(api, name)
    if current is None:
        created = None if dry_run else api.post("/consumers/", documents.create_body(document))
        report(name, "created" if dry_run else f"created (id {created['id']})", [], fmt, created, dry_run)
        return
    steps = plan(current, desired)
    label = name or current.get("name") or current["id"]
    if not steps:
        report(label, "unchanged", [], fmt, current, dry_run)
        return
    if not dry_run:
        run(api, current["id"], steps)
        current = api.get(path("consumers", current["id"]))
    report(label, "configured", steps, fmt, current, dry_run)


@click.command("apply")
@api_options
@documents.file_option
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
def apply(api: Api, fmt: str, document, dry_run: bool) -> None:
    """Create the consumer the document names, or change it to match (YAML or JSON, the API's body).

    What `kcm consumers get NAME -o yaml` prints applies back unchanged: read-only fields are ignored."""
    apply_document(api, documents.read(document), fmt, dry_run=dry_run)


@click.command("edit")
@api_options
@click.argument("consumer")
def edit(api: Api, fmt: str, consumer: str) -> None:
    """Open CONSUMER's YAML in $VISUAL/$EDITOR and apply what you save."""
    current = api.get(path("consumers", consumer))
    original = output.dump_yaml(current)
    header = ("# Edit, save and quit to apply; read-only fields (id, status, ...) are ignored.\n"
              "# An empty file, or no change, cancels.\n")
    edited = click.edit(header + original, extension=".yaml", require_save=True)
    if edited is None or not edited.strip() or edited == header + original:
        click.echo("edit cancelled: nothing changed", err=True)
        return
    try:
        apply_document(api, documents.parse(edited, "the edited file"), fmt, dry_run=False, current=current)
    except click.ClickException as exc:
        with tempfile.NamedTemporaryFile("w", prefix="kcm-edit-", suffix=".yaml", delete=False) as kept:
            kept.write(edited)
        exc.message += f"\n  your edit is kept in {kept.name} (apply it with `kcm consumers apply -f {kept.name}`)"
        raise

