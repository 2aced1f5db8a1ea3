"""Consumer-group scopes: a principal may be limited to groups matching glob patterns (``billing-*``).

``*`` matches any run of characters, ``?`` one character; nothing else is special, and ``[``/``]`` are refused
so the patterns mean the same in Python, in PostgreSQL's LIKE and in SQLite's GLOB. ``None`` means every group;
an empty tuple matches none. The one place a scope is matched, in Python or in SQL."""
from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

MAX_PATTERNS = 50
MAX_PATTERN_LENGTH = 255
PATTERN_MESSAGE = (f"A scope is a consumer-group glob pattern of 1-{MAX_PATTERN_LENGTH} printable characters "
                   "where '*' matches any run and '?' one character ('[' and ']' are not allowed).")


class InvalidScope(ValueError):
    pass


def check_patterns(patterns: object) -> tuple[str, ...]:
    """The patterns as a tuple; InvalidScope when one is not a usable pattern or the list is empty."""
    if not isinstance(patterns, (list, tuple)) or not patterns:
        raise InvalidScope("Give a non-empty list of patterns, or leave scopes out for every consumer group.")
    if len(patterns) > MAX_PATTERNS:
        raise InvalidScope(f"At most {MAX_PATTERNS} patterns.")
    for pattern in patterns:
        if (not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_PATTERN_LENGTH or not pattern.isprintable()
                or "[" in pattern or "]" in pattern):
            raise InvalidScope(PATTERN_MESSAGE)
    return tuple(dict.fromkeys(patterns))


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern:
    parts = (".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.compile("".join(parts), re.DOTALL)


def matches(scopes: Iterable[str] | None, group: str) -> bool:
    if scopes is None:
        return True
    return any(_regex(pattern).fullmatch(group) for pattern in scopes)


def covers(outer: tuple[str, ...] | None, inner: tuple[str, ...] | None) -> bool:
    """Whether a principal with ``outer`` may hand out ``inner``: only patterns it holds itself, verbatim."""
    if outer is None:
        return True
    return inner is not None and set(inner) <= set(outer)


def sql_pattern(pattern: str, dialect: str) -> str:
    """The pattern in the dialect's case-sensitive matching syntax: GLOB on SQLite (whose LIKE ignores case),
    LIKE with backslash escapes elsewhere."""
    if dialect == "sqlite":
        return pattern  # GLOB's * and ? are ours; '[' is refused above
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def sql_condition(column, operands: list, dialect: str):
    """``column`` matches any operand (each already ``sql_pattern``-converted, or a bind parameter for one);
    no operands match nothing."""
    from sqlalchemy import false, or_

    if not operands:
        return false()
    if dialect == "sqlite":
        return or_(*(column.op("GLOB")(operand) for operand in operands))
    return or_(*(column.like(operand, escape="\\") for operand in operands))
