"""The ``filter`` step's condition language: what a parsed condition means, evaluated per message (no ``eval``).

processors/expressions_parse.py holds the grammar, the tokenizer and ``parse``, which builds a condition once
into the closures below: getters (a path's value or ``MISSING``), comparisons and predicates.

Meaning: ``value`` is the message value parsed as JSON (a tombstone has none); ``key`` and a header are their
UTF-8 text; ``timestamp`` is milliseconds since the epoch. A path that is not there is *missing*: ``exists``
is false for it and it compares like ``null``. Comparisons never raise: values of different types are unequal
(``1 != "1"``, ``true != 1``) and ``<``/``<=``/``>``/``>=`` hold only between two numbers or two strings.
``a in b``: membership when ``b`` is a list, a substring when both are strings, a key when ``b`` is an object.
A bare operand is true only when it is the JSON ``true``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__slots__": ()})()

Getter = Callable[[Any, Any], Any]  # (message, parsed value or MISSING) -> value or MISSING
Predicate = Callable[[Any, Any], bool]


class ExpressionError(ValueError):
    """A condition that does not parse; ``column`` is 1-based."""

    def __init__(self, message: str, source: str, position: int):
        self.reason = message
        self.column = position + 1
        shown = source if len(source) <= 80 else source[:77] + "..."
        super().__init__(f"{message} at column {self.column}: {shown}")


# ---------------------------------------------------------------------- getters
def value_getter(segments: tuple) -> Getter:
    if not segments:
        return lambda m, d: d
    if all(isinstance(s, str) for s in segments):
        def get(m, d):
            try:  # MISSING, a list or a scalar on the way raise TypeError: the path is not there
                for segment in segments:
                    d = d[segment]
            except (KeyError, TypeError):
                return MISSING
            return d
        return get

    def get_indexed(m, d):
        for segment in segments:
            if type(segment) is int:
                if type(d) is not list or not -len(d) <= segment < len(d):
                    return MISSING
            elif type(d) is not dict or segment not in d:
                return MISSING
            d = d[segment]
        return d
    return get_indexed


def _text(data: bytes | None):
    return MISSING if data is None else data.decode("utf-8", "replace")


def header_getter(name: str) -> Getter:
    def get(m, d):
        for header, value in m.headers() or ():
            if header == name:
                return None if value is None else value.decode("utf-8", "replace")
        return MISSING
    return get


def _timestamp(m, d):
    kind, ms = m.timestamp()
    return ms if kind else MISSING


ROOT_GETTERS: dict[str, Getter] = {
    "key": lambda m, d: _text(m.key()),
    "topic": lambda m, d: m.topic(),
    "partition": lambda m, d: m.partition(),
    "offset": lambda m, d: m.offset(),
    "timestamp": _timestamp,
}


@dataclass(frozen=True)
class Operand:
    get: Getter | None = None
    value: Any = None
    constant: bool = False

    @classmethod
    def of(cls, value) -> Operand:
        return cls(get=lambda m, d: value, value=value, constant=True)


# ---------------------------------------------------------------------- semantics
def _is_number(v) -> bool:
    return (v.__class__ is int or v.__class__ is float)


def equal(a, b) -> bool:
    """JSON equality: missing is null, a bool is not a number, 1 == 1.0."""
    if a is MISSING:
        a = None
    if b is MISSING:
        b = None
    if (a.__class__ is bool) is not (b.__class__ is bool):
        return False
    return a == b


def ordered(op: str, a, b) -> bool:
    if not ((_is_number(a) and _is_number(b)) or (a.__class__ is str and b.__class__ is str)):
        return False
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def compare(op: str, left: Operand, right: Operand) -> Predicate:
    if left.constant and not right.constant:  # put the constant on the right: one specialised closure
        left, right = right, left
        op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
    get = left.get
    if left.constant:  # two literals: decided now
        result = equal(left.value, right.value) if op in ("==", "!=") else ordered(op, left.value, right.value)
        result = (not result) if op == "!=" else result
        return (lambda m, d: True) if result else (lambda m, d: False)
    if not right.constant:
        other = right.get
        if op == "==":
            return lambda m, d: equal(get(m, d), other(m, d))
        if op == "!=":
            return lambda m, d: not equal(get(m, d), other(m, d))
        return lambda m, d: ordered(op, get(m, d), other(m, d))
    c = right.value
    if op in ("==", "!="):
        positive = _equals_constant(get, c)
        if op == "==":
            return positive
        return lambda m, d: not positive(m, d)
    if _is_number(c):
        if op == ">":
            return lambda m, d: _is_number(v := get(m, d)) and v > c
        if op == ">=":
            return lambda m, d: _is_number(v := get(m, d)) and v >= c
        if op == "<":
            return lambda m, d: _is_number(v := get(m, d)) and v < c
        return lambda m, d: _is_number(v := get(m, d)) and v <= c
    if c.__class__ is str:
        if op == ">":
            return lambda m, d: (v := get(m, d)).__class__ is str and v > c
        if op == ">=":
            return lambda m, d: (v := get(m, d)).__class__ is str and v >= c
        if op == "<":
            return lambda m, d: (v := get(m, d)).__class__ is str and v < c
        return lambda m, d: (v := get(m, d)).__class__ is str and v <= c
    return lambda m, d: False  # ordering against true/false/null/a list never holds


def _equals_constant(get: Getter, c) -> Predicate:
    if c is None:
        return lambda m, d: (v := get(m, d)) is None or v is MISSING
    if c.__class__ is bool:
        return lambda m, d: get(m, d) is c
    if c.__class__ is str:
        return lambda m, d: get(m, d) == c  # only a str equals a str
    if _is_number(c):
        return lambda m, d: (v := get(m, d)) == c and v.__class__ is not bool
    return lambda m, d: equal(get(m, d), c)  # a list literal


def contains(item, container) -> bool:
    if container.__class__ is list:
        return any(equal(item, element) for element in container)
    if container.__class__ is str:
        return item.__class__ is str and item in container
    if container.__class__ is dict:
        return item.__class__ is str and item in container
    return False


def membership(left: Operand, right: Operand) -> Predicate:
    get = left.get
    if right.constant and right.value.__class__ is list and not left.constant:
        members = right.value
        strings = frozenset(v for v in members if v.__class__ is str)
        numbers = frozenset(v for v in members if _is_number(v))
        bools = frozenset(v for v in members if v.__class__ is bool)
        has_null = None in members

        def in_literal(m, d):
            v = get(m, d)
            kind = v.__class__
            if kind is str:
                return v in strings
            if kind is bool:
                return v in bools
            if kind is int or kind is float:
                return v in numbers
            return has_null and (v is None or v is MISSING)
        return in_literal
    other = right.get
    return lambda m, d: contains(get(m, d), other(m, d))


def any_of(parts: list[Predicate]) -> Predicate:
    if len(parts) == 2:
        a, b = parts
        return lambda m, d: a(m, d) or b(m, d)
    return lambda m, d: any(p(m, d) for p in parts)


def all_of(parts: list[Predicate]) -> Predicate:
    if len(parts) == 2:
        a, b = parts
        return lambda m, d: a(m, d) and b(m, d)
    return lambda m, d: all(p(m, d) for p in parts)
