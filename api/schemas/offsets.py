"""The rules of the offsets endpoints, in one place: what a reset body may say (the strategies of
``kafka-consumer-groups.sh --reset-offsets``), the timestamp and duration forms, and the answers' shapes.

A rule that needs Kafka (a partition the topic does not have) is checked by api/services/offsets.py against the
topic's partitions, with the same 422 body.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

STRATEGIES = ("earliest", "latest", "timestamp", "offset", "shift")
MAX_OFFSET = 2**63 - 1
MAX_PARTITION = 2**31 - 1
MAX_TIMESTAMP_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
MAX_DURATION = timedelta(days=36500)
# java.time.Duration's form, the one kafka-consumer-groups.sh --by-duration takes: PnDTnHnMn.nS
_DURATION = re.compile(r"P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?"
                       r"(?:(?P<seconds>\d+(?:[.,]\d{1,9})?)S)?)?", re.IGNORECASE)
DURATION_HELP = "an ISO-8601 duration such as PT1H, PT15M, P1DT12H or PT90S (days, hours, minutes, seconds)"
# which strategy each optional field belongs to
FIELD_OF_STRATEGY = {"timestamp": ("timestamp", "duration"), "offset": ("offset",), "shift": ("shift",)}


def parse_duration(text: str) -> timedelta:
    """``PT1H`` -> one hour. Years, months and weeks are refused (java.time.Duration refuses them too)."""
    text = text.strip()
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groupdict().values()) or text.upper().endswith("T"):
        if text[:1].upper() == "P" and re.search(r"\d[YMW]", text.upper().split("T", 1)[0]):
            raise ValidationError("Years, months and weeks have no fixed length: give days instead, e.g. P30D.")
        raise ValidationError(f"Not a duration: give {DURATION_HELP}.")
    try:
        duration = timedelta(**{name: float((value or "0").replace(",", "."))
                                for name, value in match.groupdict().items()})
    except OverflowError:
        duration = MAX_DURATION * 2
    if duration <= timedelta(0):
        raise ValidationError("The duration must be longer than zero.")
    if duration > MAX_DURATION:
        raise ValidationError("The duration must be at most 36500 days.")
    return duration


class Duration(fields.Field):
    """An ISO-8601 duration string, loaded as a ``timedelta``."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError(f"Not a duration: give {DURATION_HELP}.")
        return parse_duration(value)


class Timestamp(fields.Field):
    """Epoch milliseconds (an integer, or a string of digits) or an ISO-8601 date and time (UTC when it names
    no offset), loaded as epoch milliseconds."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValidationError("Not a timestamp: give epoch milliseconds or an ISO-8601 date and time.")
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, int):
            if not 0 <= value <= MAX_TIMESTAMP_MS:
                raise ValidationError("Epoch milliseconds must be between 0 and 253402300799999 (year 9999).")
            return value
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValidationError("Not a timestamp: give epoch milliseconds or an ISO-8601 date and time such as "
                                  "2026-12-01T10:00:00Z.") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        try:
            ms = int(when.timestamp() * 1000)
        except (OverflowError, OSError, ValueError):
            ms = -1
        if not 0 <= ms <= MAX_TIMESTAMP_MS:
            raise ValidationError("The timestamp must be between 1970-01-01 and 9999-12-31 (UTC).")
        return ms


class OffsetResetIn(Schema):
    to = fields.String(required=True, validate=validate.OneOf(
        STRATEGIES, error="Must be one of: earliest, latest, timestamp, offset, shift (a duration goes with "
                          "to=timestamp)."), metadata={
        "description": "earliest | latest | timestamp (with timestamp or duration) | offset (with offset) | shift "
                       "(with shift)"})
    timestamp = Timestamp(metadata={
        "description": "to=timestamp: epoch milliseconds or ISO-8601 (UTC when no offset is given); each partition "
                       "goes to the first offset whose message timestamp is at or after it (Kafka's "
                       "offsets_for_times), or to the end when none is"})
    duration = Duration(metadata={
        "description": f"to=timestamp: that long ago, {DURATION_HELP}"})
    offset = fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_OFFSET), metadata={
        "description": "to=offset: this offset in every chosen partition (clamped to the watermarks)"})
    shift = fields.Integer(strict=True, validate=validate.Range(min=-MAX_OFFSET, max=MAX_OFFSET), metadata={
        "description": "to=shift: move each partition's current offset by this many (negative: back)"})
    partitions = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_PARTITION)),
        validate=validate.Length(min=1, max=10000), metadata={"description": "default: every partition"})
    dry_run = fields.Boolean(load_default=True, metadata={
        "description": "default true: answer what would change and change nothing"})

    @validates_schema
    def _one_strategy(self, data, **kwargs):
        to = data.get("to")
        if to is None:
            return
        errors: dict[str, list[str]] = {}
        wanted = FIELD_OF_STRATEGY.get(to, ())
        for strategy, names in FIELD_OF_STRATEGY.items():
            for name in names:
                if name in data and name not in wanted:
                    errors[name] = [f"Only with to={strategy}; to={to} takes "
                                    f"{' or '.join(wanted) if wanted else 'no target field'}."]
        if to == "timestamp":
            given = [name for name in ("timestamp", "duration") if name in data]
            if not given:
                errors["timestamp"] = ["to=timestamp needs a timestamp (or a duration)."]
            elif len(given) == 2:
                errors["duration"] = ["Give a timestamp or a duration, not both."]
        elif to in ("offset", "shift") and to not in data:
            errors[to] = [f"to={to} needs {to}."]
        partitions = data.get("partitions") or []
        if len(set(partitions)) != len(partitions):
            errors["partitions"] = ["A partition is named twice."]
        if errors:
            raise ValidationError(errors)


class PartitionOffsetsOut(Schema):
    partition = fields.Integer(required=True)
    committed = fields.Integer(allow_none=True, metadata={"description": "the group's committed offset; null: none"})
    low_watermark = fields.Integer(required=True)
    high_watermark = fields.Integer(required=True)
    lag = fields.Integer(required=True, metadata={
        "description": "high_watermark minus where the group reads next (its commit, or auto_offset_reset's end)"})
    processor_offsets = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "processor id -> the next offset an exactly-once processor stored (kcm_offsets)"})


class StoringProcessorOut(Schema):
    id = fields.String(required=True)
    processor_type = fields.String(required=True)


class OffsetsOut(Schema):
    consumer_id = fields.UUID(required=True)
    topic = fields.String(required=True)
    consumer_group = fields.String(required=True)
    auto_offset_reset = fields.String(required=True)
    total_lag = fields.Integer(required=True)
    partitions = fields.List(fields.Nested(PartitionOffsetsOut), required=True)
    exactly_once_processors = fields.List(fields.Nested(StoringProcessorOut), required=True, metadata={
        "description": "the processors that keep their own offsets (their values per partition above)"})


class PartitionMoveOut(Schema):
    partition = fields.Integer(required=True)
    from_ = fields.Integer(data_key="from", attribute="from", allow_none=True, metadata={
        "description": "where the next start would resume now; null: nothing committed (auto_offset_reset)"})
    to = fields.Integer(allow_none=True, metadata={
        "description": "where it resumes after the change (clamped to the watermarks); null: forgotten, the next "
                       "start follows auto_offset_reset"})


class OffsetChangeOut(Schema):
    dry_run = fields.Boolean(required=True)
    partitions = fields.List(fields.Nested(PartitionMoveOut), required=True)
