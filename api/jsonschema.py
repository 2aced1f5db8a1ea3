"""A small marshmallow -> JSON Schema (draft 2020-12) converter for GET /processor-types/.

Covers what processor config schemas use: String, Integer, Float, Decimal, Boolean, DateTime, Date, UUID,
Email, URL, List, Tuple, Dict, Nested, Enum, Raw; OneOf / Range / Length / Regexp validators; required,
allow_none, load_default and ``metadata["description"]``.
"""
from __future__ import annotations

import datetime
import decimal
import enum
import json
import uuid

from marshmallow import INCLUDE, RAISE, Schema, fields, missing, validate

DIALECT = "https://json-schema.org/draft/2020-12/schema"

# most specific classes first: Email is a String, Integer is a Number
_SIMPLE_TYPES: list[tuple[type[fields.Field], dict]] = [
    (fields.Email, {"type": "string", "format": "email"}),
    (fields.URL, {"type": "string", "format": "uri"}),
    (fields.UUID, {"type": "string", "format": "uuid"}),
    (fields.String, {"type": "string"}),
    (fields.Integer, {"type": "integer"}),
    (fields.Number, {"type": "number"}),
    (fields.Boolean, {"type": "boolean"}),
    (fields.DateTime, {"type": "string", "format": "date-time"}),
    (fields.Date, {"type": "string", "format": "date"}),
    (fields.Time, {"type": "string", "format": "time"}),
    (fields.TimeDelta, {"type": "number"}),
]


def schema_to_jsonschema(schema: Schema | type[Schema], *, root: bool = True) -> dict:
    schema = schema() if isinstance(schema, type) else schema
    return _object(schema, root=root, seen=set())


def _object(schema: Schema, *, root: bool, seen: set[type]) -> dict:
    out: dict = {"$schema": DIALECT} if root else {}
    out["type"] = "object"
    doc = type(schema).__doc__
    if root and doc:
        out["description"] = " ".join(doc.split())
    properties, required = {}, []
    seen = seen | {type(schema)}
    for name, field in schema.load_fields.items():
        key = field.data_key or name
        properties[key] = _field(field, seen)
        if field.required:
            required.append(key)
    out["properties"] = properties
    if required:
        out["required"] = required
    unknown = getattr(schema, "unknown", RAISE)
    if unknown == RAISE:
        out["additionalProperties"] = False
    elif unknown == INCLUDE:
        out["additionalProperties"] = True
    return out


def _field(field: fields.Field, seen: set[type]) -> dict:
    out = _field_type(field, seen)
    for validator in field.validators:
        out.update(_validator(validator, out.get("type")))
    if field.allow_none and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
    default = field.load_default
    if default is not missing:
        default = default() if callable(default) else default
        if _json_safe(default) is not missing:
            out["default"] = _json_safe(default)
    description = field.metadata.get("description")
    if description:
        out["description"] = description
    return out


def _field_type(field: fields.Field, seen: set[type]) -> dict:
    if isinstance(field, fields.Nested):
        nested = field.schema
        if type(nested) in seen:  # a recursive schema: stop instead of looping
            return {"type": "object"}
        body = _object(nested, root=False, seen=seen)
        return {"type": "array", "items": body} if field.many else body
    if isinstance(field, fields.List):
        return {"type": "array", "items": _field(field.inner, seen)}
    if isinstance(field, fields.Tuple):
        items = [_field(f, seen) for f in field.tuple_fields]
        return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
    if isinstance(field, fields.Dict):
        out: dict = {"type": "object"}
        if field.value_field is not None:
            out["additionalProperties"] = _field(field.value_field, seen)
        return out
    if isinstance(field, fields.Enum):
        values = [m.value if field.by_value else m.name for m in field.enum]
        return {"enum": [_json_safe(v) for v in values]}
    for cls, body in _SIMPLE_TYPES:
        if isinstance(field, cls):
            return dict(body)
    return {}  # Raw, Function, Method and unknown custom fields accept anything


def _validator(validator, json_type) -> dict:
    is_array = json_type == "array"
    if isinstance(validator, validate.OneOf):
        return {"enum": [_json_safe(c) for c in validator.choices]}
    if isinstance(validator, validate.Range):
        out = {}
        if validator.min is not None:
            out["minimum" if validator.min_inclusive else "exclusiveMinimum"] = validator.min
        if validator.max is not None:
            out["maximum" if validator.max_inclusive else "exclusiveMaximum"] = validator.max
        return out
    if isinstance(validator, validate.Length):
        low, high = ("minItems", "maxItems") if is_array else (
            ("minProperties", "maxProperties") if json_type == "object" else ("minLength", "maxLength"))
        if validator.equal is not None:
            return {low: validator.equal, high: validator.equal}
        out = {}
        if validator.min is not None:
            out[low] = validator.min
        if validator.max is not None:
            out[high] = validator.max
        return out
    if isinstance(validator, validate.Regexp):
        return {"pattern": validator.regex.pattern}
    return {}


def _json_safe(value):
    """The value as JSON would carry it, or ``missing`` if it has no JSON form."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time, uuid.UUID)):
        return value.isoformat() if not isinstance(value, uuid.UUID) else str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return missing
    return value
