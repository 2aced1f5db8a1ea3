"""Consumer documents: the API's own body, read from YAML or JSON, and the writable part of a consumer.

What is read-only is the API's rule (``api.schemas``' ``CONSUMER_READ_ONLY`` / ``PROCESSOR_READ_ONLY``); a
document may carry those fields (``kcm consumers get -o yaml`` prints them) and the CLI leaves them out of what
it sends, so a printed consumer can be applied back as it is.
"""
from __future__ import annotations

import click

from api.cli.errors import BadInput

PROCESSOR_DEFAULTS = {"config": {}, "on_error": "retry"}  # the API's load defaults of ProcessorIn


def read_only() -> tuple[tuple[str, ...], tuple[str, ...]]:
    from api.schemas.consumers import CONSUMER_READ_ONLY
    from api.schemas.processors import PROCESSOR_READ_ONLY

    return CONSUMER_READ_ONLY, PROCESSOR_READ_ONLY


def parse(text: str, source: str) -> dict:
    """A YAML or JSON mapping (JSON is YAML); a bad document is exit 2 naming the source."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadInput(f"{source} is neither YAML nor JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{source} must hold one consumer (a mapping of fields), not {type(data).__name__}")
    return data


def read(stream) -> dict:
    """The document in an open ``click.File`` (``-`` is stdin)."""
    name = getattr(stream, "name", "-")
    return parse(stream.read(), "stdin" if name in ("-", "<stdin>") else name)


def file_option(command):
    return click.option("-f", "--file", "document", type=click.File("r"), required=True,
                        help="The consumer as YAML or JSON (the API's body; - reads stdin).")(command)


def writable(document: dict) -> dict:
    """The document without read-only fields, its processors likewise."""
    consumer_ro, processor_ro = read_only()
    body = {k: v for k, v in document.items() if k not in consumer_ro}
    processors = body.get("downstream_processors")
    if isinstance(processors, list):
        body["downstream_processors"] = [
            {k: v for k, v in p.items() if k not in processor_ro} if isinstance(p, dict) else p for p in processors]
    return body


def create_body(document: dict) -> dict:
    """A POST /consumers/ body: writable fields, nulls left out (the form not used, fields left to defaults)."""
    return {k: v for k, v in writable(document).items() if v is not None}
