"""Placement labels: which supervisors may run a consumer (docs/runtime.md, "Several supervisors").

A supervisor carries labels (``KCM_SUPERVISOR_LABELS=zone=a,disk=ssd``); a consumer's optional ``placement`` is
a small map (``{"zone": "a"}``) or a list of ``key=value`` strings, stored as a map. A consumer runs only on a
supervisor that carries every one of its labels; no placement runs anywhere. Standard library only.
"""
from __future__ import annotations

import re

MAX_LABELS = 16
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}")
_VALUE = re.compile(r"[A-Za-z0-9_.\-]{0,63}")


class LabelError(ValueError):
    """A label that is not ``key=value`` with a short key and value of letters, digits and ``_.-`` (``/`` in keys)."""


def _pair(key: object, value: object) -> tuple[str, str]:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise LabelError(f"label key {key!r} must be 1-63 letters, digits or '_.-/', starting with a letter or digit")
    if not isinstance(value, str) or not _VALUE.fullmatch(value):
        raise LabelError(f"label {key}: value {value!r} must be at most 63 letters, digits or '_.-'")
    return key, value


def _split(item: object) -> tuple[str, str]:
    if not isinstance(item, str) or "=" not in item:
        raise LabelError(f"label {item!r} must be 'key=value'")
    key, value = item.split("=", 1)
    return _pair(key.strip(), value.strip())


def normalize(value: object) -> dict[str, str] | None:
    """A placement or label set as a map; None for nothing. Raises LabelError."""
    if value is None:
        return None
    if isinstance(value, dict):
        pairs = [_pair(k, v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        pairs = [_split(item) for item in value]
        keys = [k for k, _v in pairs]
        if len(set(keys)) != len(keys):
            raise LabelError("a label key may appear only once")
    else:
        raise LabelError("labels must be a map of key to value, or a list of 'key=value' strings")
    if len(pairs) > MAX_LABELS:
        raise LabelError(f"at most {MAX_LABELS} labels")
    return dict(pairs) or None


def parse(text: str) -> dict[str, str]:
    """``KCM_SUPERVISOR_LABELS``: comma-separated ``key=value``; empty: no labels."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    return normalize(items) or {}


def matches(placement: dict[str, str] | None, labels: dict[str, str] | None) -> bool:
    """Whether a supervisor with ``labels`` may run a consumer with ``placement``."""
    if not placement:
        return True
    have = labels or {}
    return all(have.get(k) == v for k, v in placement.items())
