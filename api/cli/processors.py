"""``kcm processors``: a consumer's downstream processors, and the processor types installed in the API."""
from __future__ import annotations

import click

from api.cli import output
from api.cli.client import Api, api_options, path
from api.cli.consumers import PROCESSOR_COLUMNS
from api.cli.errors import BadInput

ON_ERROR = ("retry", "dead_letter", "skip")
TYPE_COLUMNS = ("name", "description", "error")


def config_value(ctx, param, value):
    """``--config`` as inline YAML/JSON, or ``@FILE`` holding it; a mapping."""
    if value is None:
        return None
    import yaml

    if value.startswith("@"):
        try:
            with open(value[1:]) as fh:
                value = fh.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {value[1:]}: {exc.strerror}", ctx=ctx, param=param) from None
    try:
        config = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"not YAML or JSON: {exc}", ctx=ctx, param=param) from None
    if not isinstance(config, dict):
        raise click.BadParameter("must be a mapping, e.g. '{\"file_path\": \"out.log\"}'", ctx=ctx, param=param)
    return config


def config_option(command):
    return click.option("--config", callback=config_value, metavar="YAML|JSON|@FILE",
                        help="The processor's config (inline, or @file).")(command)


def processor_id(api: Api, consumer: str, ref: str) -> str:
    """A processor's id, or its 0-based place in the pipeline (as `kcm processors list` numbers them)."""
    if not ref.isdigit():
        return ref
    listed = api.get(path("consumers", consumer, "processors"))
    index = int(ref)
    if index >= len(listed):
        raise BadInput(f"{consumer} has {len(listed)} processor(s): there is no processor {index}")
    return listed[index]["id"]


def numbered(processors: list) -> list:
    return [{"#": i, **p} for i, p in enumerate(processors)]


@click.group("processors")
def processors() -> None:
    """A consumer's processors (PROCESSOR is an id or the 0-based place in the pipeline)."""


@processors.command("list")
@api_options
@click.argument("consumer")
def list_processors(api: Api, fmt: str, consumer: str) -> None:
    """CONSUMER's processors in pipeline order."""
    body = api.get(path("consumers", consumer, "processors"))
    output.emit(body, fmt, text=lambda b: output.table(numbered(b), ("#", *PROCESSOR_COLUMNS)) if b else "(none)")


@processors.command("show")
@api_options
@click.argument("consumer")
@click.argument("processor")
def show(api: Api, fmt: str, consumer: str, processor: str) -> None:
    """One processor."""
    output.emit(api.get(path("consumers", consumer, "processors", processor_id(api, consumer, processor))), fmt)


@processors.command("add")
@api_options
@click.argument("consumer")
@click.option("--type", "processor_type", required=True, help="An installed type (`kcm processors types`).")
@config_option
@click.option("--on-error", type=click.Choice(ON_ERROR), help="What the worker does when it rejects a batch.")
@click.option("--position", type=click.IntRange(min=0), help="Order in the pipeline (default: after the last).")
def add(api: Api, fmt: str, consumer: str, processor_type: str, config, on_error, position) -> None:
    """Add a processor to CONSUMER's pipeline."""
    body = {"processor_type": processor_type, "config": config or {}}
    body.update({k: v for k, v in (("on_error", on_error), ("position", position)) if v is not None})
    created = api.post(path("consumers", consumer, "processors"), body)
    output.emit(created, fmt, text=lambda p: f"added processor {p['id']} ({p['processor_type']}) "
                                             f"at position {p['position']}")


@processors.command("update")
@api_options
@click.argument("consumer")
@click.argument("processor")
@click.option("--type", "processor_type", help="Another type (its config must suit it).")
@config_option
@click.option("--on-error", type=click.Choice(ON_ERROR))
@click.option("--position", type=click.IntRange(min=0))
def update(api: Api, fmt: str, consumer: str, processor: str, processor_type, config, on_error, position) -> None:
    """Change a processor; its id stays (so its dead letters stay replayable)."""
    changes = {k: v for k, v in (("processor_type", processor_type), ("config", config), ("on_error", on_error),
                                 ("position", position)) if v is not None}
    if not changes:
        raise click.UsageError("nothing to change: give --type, --config, --on-error or --position")
    pid = processor_id(api, consumer, processor)
    body = api.patch(path("consumers", consumer, "processors", pid), changes)
    output.emit(body, fmt, text=lambda p: f"updated processor {p['id']} ({p['processor_type']})")


@processors.command("remove")
@api_options
@click.argument("consumer")
@click.argument("processor")
def remove(api: Api, fmt: str, consumer: str, processor: str) -> None:
    """Remove a processor from CONSUMER's pipeline."""
    pid = processor_id(api, consumer, processor)
    api.delete(path("consumers", consumer, "processors", pid))
    output.emit({"removed": pid}, fmt, text=lambda _: f"removed processor {pid}")


@processors.command("types")
@api_options
def types(api: Api, fmt: str) -> None:
    """The processor types installed in the API, with their config's JSON Schema (in -o json/yaml)."""
    output.emit(api.get("/processor-types/"), fmt, columns=TYPE_COLUMNS)
