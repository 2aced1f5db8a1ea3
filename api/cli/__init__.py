"""``kcm``, the command line client (console script ``kcm = api.cli:main``).

Light on import: click and the standard library here; each command imports confluent-kafka, requests or PyYAML
only when it runs, so ``--help`` and shell completion stay fast. Exit codes: ``api.cli.errors``.
"""
from __future__ import annotations

import sys

import click

from api.cli.errors import API_ERROR


def main(argv: list[str] | None = None) -> None:
    from api.cli.app import cli

    try:
        cli.main(args=argv, prog_name="kcm")  # standalone: click exits with the command's code
    except Exception as exc:  # a bug, not a user error: still one line, never a traceback
        click.echo(f"Error: unexpected {type(exc).__name__}: {exc}", err=True)
        sys.exit(API_ERROR)
