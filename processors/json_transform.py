"""``json_transform``: a step that parses each value as JSON, reshapes it, and passes it on re-serialised.

Operations, always in this order (each sees the result of the one before): ``rename`` (``{"from": "to"}``),
``drop`` (``[path]``), ``add`` (``{path: JSON value}``, overwriting), ``cast`` (``{path: int|float|str|bool}``),
``mask`` (``[path]``: the value replaced by ``mask_value``, or by the hex HMAC-SHA256 of its text under the key
behind ``mask_key`` with ``mask_with: hmac_sha256``). A path is dotted (``customer.email``); a missing field is
left alone (``add`` and ``rename`` create the objects on the way). Output is compact UTF-8 JSON.

A value that is not UTF-8 JSON (``NaN`` included), not an object when an operation is configured, a cast that
cannot be made, or a path through a non-object is a poison message under the step's ``on_error``; the error
names the field and the types, never the value. A tombstone (no value) passes unchanged. Once every value of
the batch is transformed, librdkafka's messages take their new value in place (``Message.set_value``: no object
per message); any other message (a ``Record`` of a replay or a test) is rebuilt as ``processors.base.Record``
with the original topic, partition, offset, key, headers and timestamp.
"""
from __future__ import annotations

import json

from confluent_kafka import Message
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from marshmallow.experimental.context import Context

from processors.base import BaseStep, FatalError, PoisonMessageError, Record
from processors.json_ops import CASTERS, Failed, batch_transformer, compile_operations
from schema import secrets

CASTS = tuple(CASTERS)
MASK_MODES = ("fixed", "hmac_sha256")


# ---------------------------------------------------------------------- config
def _validate_path(path: str) -> None:
    if not path or any(not part for part in path.split(".")):
        raise ValidationError("A field path is dotted names such as customer.email, without empty parts.")


def _path() -> fields.String:
    return fields.String(validate=[validate.Length(min=1, max=500), _validate_path])


def _validate_key_reference(value: str) -> None:
    settings = Context.get({}).get("settings")
    problem = secrets.check(value, secrets.SecretPolicy.of(settings) if settings is not None else None)
    if problem is not None:
        raise ValidationError(problem)


class JsonTransformConfig(Schema):
    class Meta:
        unknown = RAISE

    rename = fields.Dict(keys=_path(), values=_path(), load_default=dict, metadata={
        "description": "{\"old.path\": \"new.path\"}: move a field (applied first)"})
    drop = fields.List(_path(), load_default=list, metadata={"description": "fields to remove"})
    add = fields.Dict(keys=_path(), values=fields.Raw(allow_none=True), load_default=dict, metadata={
        "description": "{\"path\": JSON value}: set a field, overwriting"})
    cast = fields.Dict(keys=_path(), values=fields.String(validate=validate.OneOf(CASTS)), load_default=dict,
                       metadata={"description": "{\"path\": \"int|float|str|bool\"}: convert a field's type; one "
                                                "that cannot be converted is a poison message"})
    mask = fields.List(_path(), load_default=list, metadata={"description": "fields to mask (PII), applied last"})
    mask_with = fields.String(load_default="fixed", validate=validate.OneOf(MASK_MODES), metadata={
        "description": "fixed: replace with mask_value; hmac_sha256: the hex HMAC-SHA256 of the value's text "
                       "under mask_key (equal values stay equal, so joins and counts still work)"})
    mask_value = fields.Raw(load_default="***", allow_none=True, metadata={
        "description": "the JSON value a masked field gets with mask_with fixed"})
    mask_key = fields.String(load_default=None, allow_none=True, validate=_validate_key_reference, metadata={
        "description": "the HMAC key as a ${env:KCM_SECRET_...} or ${file:...} reference (hmac_sha256 only)"})

    @validates_schema(skip_on_field_errors=True)
    def _key_for_hmac(self, data, **kwargs):
        if data["mask_with"] == "hmac_sha256" and data["mask"] and not data.get("mask_key"):
            raise ValidationError("mask_with hmac_sha256 needs mask_key, a secret reference.", "mask_key")
        try:
            json.dumps([data["add"], data["mask_value"]], allow_nan=False)
        except (TypeError, ValueError):
            raise ValidationError("add and mask_value take JSON values.", "add") from None


class JsonTransformStep(BaseStep):
    ConfigSchema = JsonTransformConfig
    description = ("Step: parses JSON values, renames/drops/adds/casts/masks fields and passes them on as compact "
                   "JSON; a value that does not parse is a poison message")

    def open(self) -> None:
        key = None
        if self.config.get("mask") and self.config.get("mask_with") == "hmac_sha256":
            try:
                key = secrets.resolve(self.config["mask_key"], secrets.SecretPolicy.of(self.context.settings))
            except secrets.SecretError as exc:  # names the reference, never the value
                raise FatalError(f"json_transform mask_key: {exc}") from None
            key = key.encode()
        self.transform_values = batch_transformer(compile_operations(self.config, key))

    def transform(self, batch):
        try:  # every value first: a batch that fails (to be halved) has changed nothing
            values = self.transform_values(batch)
        except Failed as failed:
            m, exc = failed.message, failed.error
            raise PoisonMessageError(f"message {m.topic()}/{m.partition()}@{m.offset()}: "
                                     f"{type(exc).__name__}: {exc}") from None
        if all(type(m) is Message for m in batch):
            # librdkafka's own messages take their new value in place: no object per message
            for m, value in zip(batch, values, strict=True):
                if value is not None:
                    m.set_value(value)
            return batch
        return [m if value is None else Record(m.topic(), m.partition(), m.offset(), value, m.key(),
                                               None if (h := m.headers()) is None else tuple(h), m.timestamp())
                for m, value in zip(batch, values, strict=True)]
