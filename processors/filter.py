"""``filter``: a step that keeps the messages matching a condition and drops the rest.

The condition (``processors.expressions_parse`` parses it, ``processors.expressions`` gives it its meaning: comparisons, ``in``, ``exists``, ``and``/``or``/``not`` over ``value.*``,
``key``, ``topic``, ``headers.*``, ...) is checked when the config is validated and parsed once at ``open()`` into closures; a condition
that does not parse is a 422 naming the column. A value is parsed as JSON only when the condition reads
``value``; one that does not parse is a poison message under the step's ``on_error``. A dropped message counts
as processed: its offset advances with the batch.
"""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields

from processors.base import BaseStep, PoisonMessageError
from processors.expressions import MISSING, ExpressionError
from processors.expressions_parse import parse
from processors.json_ops import loads


def _validate_condition(value: str) -> None:
    try:
        parse(value)
    except ExpressionError as exc:
        raise ValidationError(str(exc)) from None


class FilterConfig(Schema):
    class Meta:
        unknown = RAISE

    condition = fields.String(required=True, validate=_validate_condition, metadata={
        "description": "keep the messages for which this is true, e.g. value.order.total >= 100 and "
                       "headers.source == \"web\" (grammar: docs/plugins.md)"})


def where(m) -> str:
    return f"{m.topic()}/{m.partition()}@{m.offset()}"


def parse_json(m):
    """The message value as JSON (``MISSING`` for a tombstone); a value that does not parse is poison."""
    raw = m.value()
    if raw is None:
        return MISSING
    try:
        return loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise PoisonMessageError(f"message {where(m)}: value is not JSON ({type(exc).__name__}: {exc})") from None


class FilterStep(BaseStep):
    ConfigSchema = FilterConfig
    description = "Step: keeps the messages matching a condition on value (JSON), key, topic or headers; drops the rest"

    def open(self) -> None:
        self.expression = parse(self.config["condition"])  # validated already: parsed once, here

    def transform(self, batch):
        matches = self.expression.matches
        if not self.expression.uses_value:
            return [m for m in batch if matches(m, MISSING)]
        return [m for m in batch if matches(m, parse_json(m))]
