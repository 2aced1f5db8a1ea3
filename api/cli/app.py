"""The root ``kcm`` group; one sub-group (or command) per resource, each in its own module."""
from __future__ import annotations

import click

from api.cli import apply, status, versions
from api.cli.audit import audit
from api.cli.client import connection_options
from api.cli.completion import completion
from api.cli.consumers import consumers
from api.cli.dead_letters import dead_letters
from api.cli.keys import keys
from api.cli.offsets import offsets
from api.cli.output import output_option
from api.cli.processors import processors
from api.cli.produce import produce
from api.cli.profiles import profile
from api.cli.supervisors import supervisors
from api.cli.topic import topic


def _root_options(command):
    for option in reversed(connection_options(with_timeout=False)):
        command = option(command)
    return output_option(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kcm", prog_name="kcm")
@_root_options
@click.pass_context
def cli(ctx: click.Context, api_url: str | None, token: str | None, profile: str | None, output: str | None) -> None:
    """kcm, the Kafka Consumer Manager, from the command line (docs/cli.md).

    The API and token: --api/--token, --profile NAME, KCM_API_URL/KCM_TOKEN, or the current profile
    (`kcm profile set`). These options (and -o) work here or after any command.

    Exit codes: 0 ok, 1 refused by the API or Kafka, 2 bad usage or input, 3 cannot connect.

    Shell completion: eval "$(kcm completion bash)" (zsh, fish).
    """
    ctx.obj = {"api_url": api_url, "token": token, "profile": profile, "output": output}


for command in (apply.apply, apply.edit, status.status, status.lag, status.errors, versions.versions,
                versions.diff, versions.rollback):
    consumers.add_command(command)

for command in (consumers, offsets, processors, dead_letters, keys, audit, supervisors, profile, completion,
                topic, produce):
    cli.add_command(command)
