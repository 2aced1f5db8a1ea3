"""``kcm completion bash|zsh|fish``: the shell completion script (click's, as ``_KCM_COMPLETE=bash_source kcm``)."""
from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_KCM_COMPLETE"


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL; e.g. add `eval "$(kcm completion bash)"` to ~/.bashrc."""
    from click.shell_completion import get_completion_class

    root = click.get_current_context().find_root().command
    script = get_completion_class(shell)(root, {}, "kcm", COMPLETE_VAR).source()
    click.echo(script)
