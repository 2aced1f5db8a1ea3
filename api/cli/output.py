"""How every API command prints: ``-o table|json|yaml`` (a table on a terminal, JSON when piped).

A table is a list of dicts shown as aligned columns (or one dict as ``key: value`` lines); nested values are
shown compact (JSON) in a cell. JSON and YAML print the API's body as it came.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence

import click

FORMATS = ("table", "json", "yaml")
MAX_CELL = 60


def resolve_format(value: str | None) -> str:
    """The ``-o`` choice, or table on a terminal and JSON when stdout is piped."""
    if value:
        return value
    return "table" if sys.stdout.isatty() else "json"


def output_option(command):
    return click.option("-o", "--output", "output", type=click.Choice(FORMATS), envvar="KCM_OUTPUT",
                        help="Output format (default: table on a terminal, json when piped).")(command)


def dump_yaml(data) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def dump_json(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False) if value else "-"
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def table(rows: Sequence[dict], columns: Sequence[str | tuple[str, Callable]]) -> str:
    """Aligned columns; a column is a key, or ``(header, row -> value)``."""
    specs = [(c, lambda row, key=c: row.get(key)) if isinstance(c, str) else c for c in columns]
    headers = [header.upper() for header, _ in specs]
    lines = [[cell(get(row)) for _, get in specs] for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    return "\n".join(out)


def fields(record: dict, keys: Sequence[str] | None = None) -> str:
    """One record as ``key: value`` lines."""
    keys = keys or list(record)
    width = max((len(k) for k in keys), default=0)
    return "\n".join(f"{(k + ':').ljust(width + 1)} {cell(record.get(k))}" for k in keys)


def render(data, fmt: str, *, columns=None, keys=None, text: Callable | None = None) -> str:
    """``data`` in ``fmt``; for a table, ``text(data)`` if given, else columns (list) or keys (one record)."""
    if fmt == "json":
        return dump_json(data)
    if fmt == "yaml":
        return dump_yaml(data).rstrip("\n")
    if text is not None:
        return text(data)
    if isinstance(data, list):
        if not data:
            return "(none)"
        return table(data, columns or list(data[0]))
    if isinstance(data, dict):
        return fields(data, keys)
    return str(data)


def emit(data, fmt: str, **kwargs) -> None:
    click.echo(render(data, fmt, **kwargs))
