"""Schemas of downstream processors: a processor's ``config`` is validated by that processor's own schema."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema
from marshmallow.experimental.context import Context

from api.schemas.common import RejectReadOnly, UTCDateTime
from processors import registry

ON_ERROR_CHOICES = ("retry", "dead_letter", "skip")
MAX_POSITION = 1_000_000


def check_processor_config(processor_type: str, config: dict | None) -> dict:
    """The canonical form of ``config`` (what is stored); raise a ValidationError keyed like the request body
    (``processor_type`` / ``config``)."""
    try:
        cls = registry.load(processor_type)
    except (registry.UnknownProcessorType, registry.ProcessorLoadError) as exc:
        raise ValidationError({"processor_type": [str(exc)]}) from exc
    try:
        canonical = cls.canonical_config(config or {})
        with Context(_validation_context()):
            cls.validate_config(canonical)
    except ValidationError as exc:
        raise ValidationError({"config": exc.messages}) from exc
    return canonical


def _validation_context() -> dict:
    """What a ConfigSchema's validators may read through marshmallow's ``Context``: the API's own settings
    (the file sink root, kcm's database), those of the serving app, or the environment's outside one."""
    from flask import current_app, has_app_context

    from api.context import EXTENSION  # here: api.context imports the services, which import this module

    services = current_app.extensions.get(EXTENSION) if has_app_context() else None
    if services is None:
        from schema.settings import Settings

        return {"settings": Settings.from_env()}
    return {"settings": services.settings}


PROCESSOR_READ_ONLY = ("id", "consumer_id", "created_at", "updated_at")


class ProcessorFields(RejectReadOnly):
    READ_ONLY = PROCESSOR_READ_ONLY

    processor_type = fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={
            "description": "An installed processor type (see GET /processor-types/)",
            "enum": registry.installed_names(),  # documentation; the registry gives the real error
        },
    )
    config = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={"description": "Validated by the processor type's own config schema"},
    )
    on_error = fields.String(
        load_default="retry",
        validate=validate.OneOf(ON_ERROR_CHOICES),
        metadata={"description": "What the worker does when this processor rejects a batch"},
    )
    position = fields.Integer(
        strict=True,
        validate=validate.Range(min=0, max=MAX_POSITION),
        metadata={"description": "Order in the pipeline (ascending); default: after the last processor"},
    )


class ProcessorIn(ProcessorFields):
    @validates_schema(skip_on_field_errors=True)
    def _config_matches_type(self, data, **kwargs):
        check_processor_config(data["processor_type"], data.get("config"))

    @post_load
    def _store_canonical_config(self, data, **kwargs):
        # validated above; the type's canonical form is what gets stored, so a GET shows one spelling
        return {**data, "config": registry.load(data["processor_type"]).canonical_config(data.get("config") or {})}


class ProcessorPatch(RejectReadOnly):
    """Partial update; the config is checked against the (new or current) type in the service layer."""

    READ_ONLY = PROCESSOR_READ_ONLY

    processor_type = fields.String(validate=validate.Length(min=1, max=100))
    config = fields.Dict(keys=fields.String())
    on_error = fields.String(validate=validate.OneOf(ON_ERROR_CHOICES))
    position = fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_POSITION))


class ProcessorOut(Schema):
    id = fields.UUID(required=True)
    consumer_id = fields.UUID(required=True)
    processor_type = fields.String(required=True)
    config = fields.Dict(required=True)
    on_error = fields.String(required=True)
    position = fields.Integer(required=True)
    created_at = UTCDateTime(required=True)
    updated_at = UTCDateTime(required=True)


class ProcessorTypeOut(Schema):
    name = fields.String(required=True)
    description = fields.String(required=True)
    config_schema = fields.Dict(
        required=True, metadata={"description": "JSON Schema of the processor's config"}
    )
    error = fields.String(
        allow_none=True, metadata={"description": "Set when the installed type cannot be imported"}
    )
