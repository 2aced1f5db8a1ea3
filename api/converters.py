"""A consumer's id or its name in every ``/consumers/{consumer_id}/...`` path.

``ConsumerRule`` gives every ``consumer_id`` path variable the ``consumer`` converter, whatever converter the
route names (``<uuid:consumer_id>`` included), so no view can forget it. The converter matches a UUID or a name
(schema/names.py) without touching the database: a UUID comes out as ``uuid.UUID``, a name as ``ConsumerName``.

A name is resolved to its id only after api/auth/guard.py authorized the request (``resolve_consumer_name``, a
``before_request`` installed after the guard's): an unauthenticated caller gets its 401 whether the name exists
or not, and the guard's scope check looks the name up itself (``ConsumerService.group_of``), so a name outside
the caller's scopes is the same ``consumer <name> not found`` as an unknown one, never its id.
"""
from __future__ import annotations

import uuid

from flask import Flask, request
from werkzeug.routing import BaseConverter, Rule

from schema.names import CONSUMER_NAME_PATTERN, UUID_PATTERN, UUID_RE

CONVERTER = "consumer"
VARIABLE = "consumer_id"


class ConsumerName(str):
    """A consumer name from a path, not yet resolved to the id."""


class ConsumerRefConverter(BaseConverter):
    regex = f"(?:{UUID_PATTERN}|{CONSUMER_NAME_PATTERN})"
    part_isolating = True

    def to_python(self, value: str) -> uuid.UUID | ConsumerName:
        return uuid.UUID(value) if UUID_RE.fullmatch(value) else ConsumerName(value)

    def to_url(self, value) -> str:
        return super().to_url(str(value))


class ConsumerRule(Rule):
    def get_converter(self, variable_name, converter_name, args, kwargs):
        if variable_name == VARIABLE:
            converter_name, args, kwargs = CONVERTER, (), {}
        return super().get_converter(variable_name, converter_name, args, kwargs)


def converter_schema(converter) -> dict:
    """The OpenAPI schema of the path parameter."""
    return {"type": "string", "pattern": f"^{converter.regex}$",
            "description": "The consumer's id (a UUID) or its name"}


def resolve_consumer_name() -> None:
    """The view gets the id; an unknown name is the same 404 the services give an unknown id."""
    view_args = request.view_args
    value = view_args.get(VARIABLE) if view_args else None
    if isinstance(value, ConsumerName):
        from api.context import services
        from api.services.errors import NotFound

        consumer_id = services().consumers.id_of(value)
        if consumer_id is None:
            raise NotFound(f"consumer {value} not found")
        view_args[VARIABLE] = consumer_id


def install_converters(app: Flask, api) -> None:
    """Before any blueprint registers its routes (and documents them)."""
    app.url_rule_class = ConsumerRule
    app.url_map.converters[CONVERTER] = ConsumerRefConverter
    api.register_converter(ConsumerRefConverter, converter_schema)


def install_name_resolution(app: Flask) -> None:
    """After install_auth: the guard's hook runs first."""
    app.before_request(resolve_consumer_name)
