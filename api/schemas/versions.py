"""Schemas of a consumer's configuration history, its diff and the rollback call."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.schemas.common import UTCDateTime

MAX_VERSION = 2**31 - 1


class PrincipalOut(Schema):
    type = fields.String(allow_none=True, attribute="principal_type")
    id = fields.String(allow_none=True, attribute="principal_id")
    name = fields.String(allow_none=True, attribute="principal_name")


class VersionOut(Schema):
    consumer_id = fields.UUID(required=True)
    version = fields.Integer(required=True, attribute="number")
    created_at = UTCDateTime(required=True)
    principal = fields.Function(lambda version: PrincipalOut().dump(version),
                                metadata={"description": "Who made the change: {type, id, name}"})
    summary = fields.String(required=True)
    config = fields.Dict(required=True, metadata={
        "description": "The whole configuration after the change: consumer fields and downstream_processors "
        "(in pipeline order, with their ids); secrets only as references"})


class ChangeOut(Schema):
    field = fields.String(required=True, metadata={
        "description": "A consumer field, 'downstream_processors[<id>]' or 'downstream_processors[<id>].<field>'"})
    change = fields.String(required=True, validate=validate.OneOf(("changed", "added", "removed")))
    before = fields.Raw(allow_none=True)
    after = fields.Raw(allow_none=True)


class DiffOut(Schema):
    version = fields.Integer(required=True)
    against = fields.Integer(required=True, metadata={"description": "0: version 1 against nothing"})
    changes = fields.List(fields.Nested(ChangeOut), required=True)


class DiffQuery(Schema):
    against = fields.Integer(strict=False, validate=validate.Range(min=1, max=MAX_VERSION),
                             metadata={"description": "The version to compare with (default: the one before)"})


class RollbackIn(Schema):
    version = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_VERSION),
                             metadata={"description": "The version to restore (default: the one before the latest)"})
