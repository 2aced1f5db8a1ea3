"""The root ``kcm`` group; one sub-group (or command) per resource, each in its own module."""
from __future__ import annotations

import click

from api.cli.produce import produce
from api.cli.topic import topic


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kcm", prog_name="kcm")
def cli() -> None:
    """kcm, the Kafka Consumer Manager, from the command line.

    Exit codes: 0 ok, 1 refused by the API or Kafka, 2 bad usage, 3 cannot connect.

    Shell completion: eval "$(_KCM_COMPLETE=bash_source kcm)" (zsh_source, fish_source).
    """


cli.add_command(topic)
cli.add_command(produce)
