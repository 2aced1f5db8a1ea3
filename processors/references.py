"""Secrets by reference: a config holds ``${env:NAME}`` or ``${file:/path}``, never the secret itself.

References are resolved at the moment a processor (re)connects, so a rotated secret or a corrected DSN is
picked up by the next retry without a restart, and the resolved value never reaches a log line or Redis.
"""
from __future__ import annotations

import os
import re

from processors.base import FatalError

_REFERENCE = re.compile(r"^\$\{(env|file):([^}]+)\}$")


def is_reference(value: object) -> bool:
    return isinstance(value, str) and bool(_REFERENCE.match(value.strip()))


def resolve(value: str | None, *, what: str = "value") -> str | None:
    """The secret behind ``value`` if it is a reference, else ``value`` unchanged."""
    if value is None:
        return None
    match = _REFERENCE.match(value.strip())
    if not match:
        return value
    kind, name = match.groups()
    if kind == "env":
        resolved = os.environ.get(name)
        if resolved is None:
            raise FatalError(f"{what}: environment variable {name} referenced by ${{env:{name}}} is not set")
        return resolved
    try:
        with open(name, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise FatalError(f"{what}: cannot read file referenced by ${{file:{name}}}: {exc.strerror}") from exc
