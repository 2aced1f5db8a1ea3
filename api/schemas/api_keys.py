"""Schemas of the API-key resource (the token appears only in the creation response)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from api.auth import scopes as scope_rules
from api.auth.roles import Role
from api.schemas.common import UTCDateTime
from api.schemas.validators import validate_not_blank


def _validate_scopes(value) -> None:
    try:
        scope_rules.check_patterns(value)
    except scope_rules.InvalidScope as exc:
        raise ValidationError(str(exc)) from None


class ApiKeyIn(Schema):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=100), validate_not_blank])
    role = fields.String(required=True, validate=validate.OneOf(Role.names()),
                         metadata={"description": "viewer < operator < admin (docs/security.md)"})
    scopes = fields.List(
        fields.String(), allow_none=True, load_default=None, validate=_validate_scopes,
        metadata={"description": "Consumer-group glob patterns ('billing-*') the key is limited to; "
                                 "leave out (or null) for every group"},
    )


class ApiKeyOut(Schema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True)
    scopes = fields.List(fields.String(), allow_none=True)
    created_by = fields.String(allow_none=True)
    created_at = UTCDateTime(required=True)
    revoked_at = UTCDateTime(allow_none=True)


class ApiKeyCreated(ApiKeyOut):
    token = fields.String(required=True, metadata={
        "description": "Send as 'Authorization: Bearer <token>'. Shown only in this response: kcm keeps only "
                       "its SHA-256 digest."})
