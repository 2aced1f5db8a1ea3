"""Per-processor delivery policy: ``on_error`` plus the retry knobs that live in the processor's config.

The retry keys are shared by every processor type, so they are split off before the type's own
``ConfigSchema`` sees the config (a third-party schema need not know them):

  max_retries                 retries of a failing batch before the policy acts      (default 5)
  retry_timeout               seconds after which retrying stops, whatever the count (default 60)
  retry_backoff               first backoff in seconds, doubled each retry           (default 0.5)
  retry_backoff_max           cap of one backoff in seconds                          (default 10)
  dead_letter_max_retries     rq Retry count of a dead-letter job                    (default 3)
  dead_letter_retry_intervals rq Retry intervals in seconds                          (default [10, 60, 300])
"""
from __future__ import annotations

from dataclasses import dataclass

from marshmallow import RAISE, Schema, fields, validate

ON_ERROR_POLICIES = ("retry", "dead_letter", "skip")


class DeliveryPolicySchema(Schema):
    class Meta:
        unknown = RAISE

    max_retries = fields.Integer(load_default=5, validate=validate.Range(min=0, max=1000))
    retry_timeout = fields.Float(load_default=60.0, validate=validate.Range(min=0))
    retry_backoff = fields.Float(load_default=0.5, validate=validate.Range(min=0))
    retry_backoff_max = fields.Float(load_default=10.0, validate=validate.Range(min=0))
    dead_letter_max_retries = fields.Integer(load_default=3, validate=validate.Range(min=0, max=100))
    dead_letter_retry_intervals = fields.List(
        fields.Integer(validate=validate.Range(min=0)), load_default=lambda: [10, 60, 300]
    )


POLICY_KEYS = frozenset(DeliveryPolicySchema().fields)


@dataclass(frozen=True)
class DeliveryPolicy:
    on_error: str = "retry"
    max_retries: int = 5
    retry_timeout: float = 60.0
    retry_backoff: float = 0.5
    retry_backoff_max: float = 10.0
    dead_letter_max_retries: int = 3
    dead_letter_retry_intervals: tuple[int, ...] = (10, 60, 300)


def split_config(raw: dict | None) -> tuple[dict, dict]:
    """``(policy keys, processor keys)`` of a raw config."""
    raw = dict(raw or {})
    policy = {k: raw.pop(k) for k in list(raw) if k in POLICY_KEYS}
    return policy, raw


def load_policy(on_error: str, raw_policy: dict) -> DeliveryPolicy:
    """Validate the policy part; raises ``marshmallow.ValidationError`` with per-field messages."""
    from marshmallow import ValidationError

    if on_error not in ON_ERROR_POLICIES:
        raise ValidationError({"on_error": [f"must be one of {', '.join(ON_ERROR_POLICIES)}"]})
    values = DeliveryPolicySchema().load(raw_policy)
    values["dead_letter_retry_intervals"] = tuple(values["dead_letter_retry_intervals"])
    return DeliveryPolicy(on_error=on_error, **values)
