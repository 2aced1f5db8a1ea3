"""The ``kcm`` CLI's exit codes and the errors that carry them (the one place they are defined).

0 ok, 1 the API or Kafka refused the request, 2 usage (click's own code for a bad command line, and a bad
file or profile), 3 the API or Kafka cannot be reached. An error prints ``Error: ...`` on stderr (an API
refusal adds its field errors, one per line), never a traceback.
"""
from __future__ import annotations

import click

OK = 0
API_ERROR = 1
USAGE = click.UsageError.exit_code
CANNOT_CONNECT = 3


class CommandFailed(click.ClickException):
    """The request reached the API or Kafka, which refused it (or did not finish it)."""

    exit_code = API_ERROR


class CannotConnect(click.ClickException):
    """The API or Kafka did not answer at all."""

    exit_code = CANNOT_CONNECT


class BadInput(click.ClickException):
    """A file, profile or option value the CLI cannot use (exit 2 like a usage error, without the usage line)."""

    exit_code = USAGE
