"""Schemas and fields every resource uses: the uniform error body and UTC timestamps."""
from __future__ import annotations

from datetime import UTC, datetime

from marshmallow import Schema, ValidationError, fields, pre_load


class ErrorSchema(Schema):
    """The one error body of the API (flask-smorest's shape, every key always present)."""

    code = fields.Integer(required=True, metadata={"description": "HTTP status code"})
    status = fields.String(required=True, metadata={"description": "HTTP status name"})
    message = fields.String(required=True, metadata={"description": "What went wrong, for a human"})
    errors = fields.Dict(
        required=True,
        metadata={"description": "Per-location, per-field messages (e.g. errors.json.topic); {} if none"},
    )


class UTCDateTime(fields.DateTime):
    """ISO-8601 with an explicit UTC offset; SQLite hands back naive datetimes that are UTC."""

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return super()._serialize(value, attr, obj, **kwargs)


class RejectReadOnly(Schema):
    """A request body that names a read-only field gets a 422 saying so (not just 'Unknown field')."""

    READ_ONLY: tuple[str, ...] = ()

    @pre_load
    def _reject_read_only(self, data, **kwargs):
        if isinstance(data, dict):
            named = [name for name in self.READ_ONLY if name in data]
            if named:
                raise ValidationError({name: ["Read-only field: it cannot be written."] for name in named})
        return data
