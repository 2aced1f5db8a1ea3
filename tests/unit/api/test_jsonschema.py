"""The marshmallow -> JSON Schema converter behind GET /processor-types/."""
from __future__ import annotations

import enum

from marshmallow import EXCLUDE, INCLUDE, Schema, fields, validate

from api.jsonschema import DIALECT, schema_to_jsonschema


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Inner(Schema):
    name = fields.String(required=True)


class Sample(Schema):
    """A sample config."""

    path = fields.String(required=True, validate=validate.Length(min=1, max=10),
                         metadata={"description": "where"})
    mode = fields.String(load_default="append", validate=validate.OneOf(["append", "truncate"]))
    retries = fields.Integer(load_default=3, validate=validate.Range(min=0, max=9))
    ratio = fields.Float(validate=validate.Range(min=0, max=1, min_inclusive=False))
    enabled = fields.Boolean(dump_default=True)
    tags = fields.List(fields.String(), validate=validate.Length(max=5), load_default=list)
    headers = fields.Dict(keys=fields.String(), values=fields.Integer())
    inner = fields.Nested(Inner)
    inners = fields.Nested(Inner, many=True)
    anything = fields.Raw(allow_none=True)
    color = fields.Enum(Color, by_value=True)
    code = fields.String(validate=validate.Regexp(r"^[A-Z]{3}$"))
    when = fields.DateTime()
    renamed = fields.String(data_key="other-name")
    out_only = fields.String(dump_only=True)


def test_object_shape_required_and_dialect():
    schema = schema_to_jsonschema(Sample)
    assert schema["$schema"] == DIALECT
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["required"] == ["path"]
    assert schema["description"] == "A sample config."
    assert "out_only" not in schema["properties"] and "other-name" in schema["properties"]


def test_scalar_fields_and_validators():
    props = schema_to_jsonschema(Sample)["properties"]
    assert props["path"] == {"type": "string", "minLength": 1, "maxLength": 10, "description": "where"}
    assert props["mode"] == {"type": "string", "enum": ["append", "truncate"], "default": "append"}
    assert props["retries"] == {"type": "integer", "minimum": 0, "maximum": 9, "default": 3}
    assert props["ratio"] == {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
    assert props["enabled"] == {"type": "boolean"}  # dump_default is not an input default
    assert props["code"] == {"type": "string", "pattern": "^[A-Z]{3}$"}
    assert props["when"] == {"type": "string", "format": "date-time"}
    assert props["color"] == {"enum": ["red", "blue"]}
    assert props["anything"] == {}


def test_containers_and_nesting():
    props = schema_to_jsonschema(Sample)["properties"]
    assert props["tags"] == {"type": "array", "items": {"type": "string"}, "maxItems": 5, "default": []}
    assert props["headers"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    inner = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
             "additionalProperties": False}
    assert props["inner"] == inner
    assert props["inners"] == {"type": "array", "items": inner}


def test_unknown_policy_maps_to_additional_properties():
    class Open(Schema):
        class Meta:
            unknown = INCLUDE

    class Lenient(Schema):
        class Meta:
            unknown = EXCLUDE

    assert schema_to_jsonschema(Open)["additionalProperties"] is True
    assert "additionalProperties" not in schema_to_jsonschema(Lenient)


def test_recursive_schema_terminates():
    class Node(Schema):
        value = fields.Integer()
        child = fields.Nested(lambda: Node())

    schema = schema_to_jsonschema(Node)
    assert schema["properties"]["child"] == {"type": "object"}


def test_nullable_and_non_json_defaults():
    import uuid

    class S(Schema):
        maybe = fields.Integer(allow_none=True, load_default=None)
        ident = fields.UUID(load_default=uuid.UUID(int=1))
        weird = fields.Raw(load_default=object())

    props = schema_to_jsonschema(S)["properties"]
    assert props["maybe"] == {"type": ["integer", "null"], "default": None}
    assert props["ident"] == {"type": "string", "format": "uuid", "default": str(uuid.UUID(int=1))}
    assert "default" not in props["weird"]
