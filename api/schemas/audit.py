"""Schemas of the audit trail (GET /audit/)."""
from __future__ import annotations

from datetime import UTC

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from api.schemas.common import UTCDateTime


class AuditQuery(Schema):
    target_type = fields.String(validate=validate.Length(min=1, max=32),
                                metadata={"description": "consumer | processor | api_key | dead_letter"})
    target_id = fields.String(validate=validate.Length(min=1, max=64))
    principal = fields.String(validate=validate.Length(min=1, max=255),
                              metadata={"description": "An API key's id or name, or a JWT subject"})
    action = fields.String(validate=validate.Length(min=1, max=64), metadata={"description": "e.g. consumer.update"})
    outcome = fields.String(validate=validate.OneOf(("allowed", "denied")))
    since = fields.AwareDateTime(default_timezone=None, metadata={"description": "ISO-8601 with offset; inclusive"})
    until = fields.AwareDateTime(default_timezone=None, metadata={"description": "ISO-8601 with offset; exclusive"})

    @validates_schema
    def _ordered(self, data, **kwargs):
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise ValidationError({"until": ["Must not be before since."]})

    @post_load
    def _in_utc(self, data, **kwargs):
        """Compared in UTC: PostgreSQL refuses offsets beyond ±15:59 that Python accepts (a 500 before)."""
        for name in ("since", "until"):
            if data.get(name) is not None:
                try:
                    data[name] = data[name].astimezone(UTC)
                except (OverflowError, ValueError):
                    raise ValidationError({name: ["Out of range once converted to UTC."]}) from None
        return data


class AuditEventOut(Schema):
    id = fields.Integer(required=True)
    occurred_at = UTCDateTime(required=True)
    principal_type = fields.String(required=True, metadata={
        "description": "api_key | bootstrap | oidc | anonymous | auth_disabled | system"})
    principal_id = fields.String(allow_none=True)
    principal_name = fields.String(allow_none=True)
    role = fields.String(allow_none=True)
    action = fields.String(required=True)
    target_type = fields.String(allow_none=True)
    target_id = fields.String(allow_none=True)
    before = fields.Dict(allow_none=True, metadata={"description": "The changed fields before the call"})
    after = fields.Dict(allow_none=True, metadata={"description": "The changed fields after the call"})
    outcome = fields.String(required=True, metadata={"description": "allowed | denied"})
    status_code = fields.Integer(allow_none=True, metadata={"description": "The refusal's status (denied only)"})
    detail = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    client_address = fields.String(allow_none=True)
    method = fields.String(allow_none=True)
    path = fields.String(allow_none=True)
