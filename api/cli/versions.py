"""``kcm consumers versions|diff|rollback``: a consumer's configuration history and the way back."""
from __future__ import annotations

import click

from api.cli import output
from api.cli.client import Api, api_options, path

VERSION_COLUMNS = ("version", "created_at", ("principal", lambda v: (v.get("principal") or {}).get("name")),
                   "summary")
CHANGE_COLUMNS = ("field", "change", "before", "after")


def version_text(version: dict) -> str:
    principal = version.get("principal") or {}
    head = (f"version {version['version']} of {version['consumer_id']}, {version['created_at']} by "
            f"{principal.get('name') or principal.get('type')}: {version['summary']}\n")
    return head + output.dump_yaml(version["config"]).rstrip("\n")


@click.command("versions")
@api_options
@click.argument("consumer")
@click.argument("number", type=click.IntRange(min=1), required=False)
def versions(api: Api, fmt: str, consumer: str, number: int | None) -> None:
    """CONSUMER's configuration versions, newest first; with NUMBER, that version's whole configuration."""
    if number is None:
        output.emit(api.pages(path("consumers", consumer, "versions")), fmt, columns=VERSION_COLUMNS)
    else:
        output.emit(api.get(path("consumers", consumer, "versions", number)), fmt, text=version_text)


@click.command("diff")
@api_options
@click.argument("consumer")
@click.argument("number", type=click.IntRange(min=1))
@click.option("--against", type=click.IntRange(min=1), help="The version to compare with (default NUMBER-1).")
def diff(api: Api, fmt: str, consumer: str, number: int, against: int | None) -> None:
    """What changed from version --against (default the one before) to version NUMBER."""
    body = api.get(path("consumers", consumer, "versions", number, "diff"), against=against)

    def text(d: dict) -> str:
        head = f"version {d['against']} -> {d['version']}:"
        return head + ("\n" + output.table(d["changes"], CHANGE_COLUMNS) if d["changes"] else " no changes")

    output.emit(body, fmt, text=text)


@click.command("rollback")
@api_options
@click.argument("consumer")
@click.option("--to", "version", type=click.IntRange(min=1), help="The version to restore (default the previous).")
def rollback(api: Api, fmt: str, consumer: str, version: int | None) -> None:
    """Make CONSUMER's configuration equal to an earlier version (written as a new version)."""
    body = api.post(path("consumers", consumer, "rollback"), {} if version is None else {"version": version})
    output.emit(body, fmt, text=lambda c: f"{consumer}: configuration restored"
                                          + (f" to version {version}" if version else " to the previous version")
                                          + f" (generation {c['generation']})")
