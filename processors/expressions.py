"""The ``filter`` step's condition language: parsed once into closures, evaluated per message (no ``eval``).

Grammar (keywords are lower case; docs/plugins.md has examples)::

    condition  := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | predicate
    predicate  := "exists" path | "exists" "(" path ")"
                | operand [ ("==" | "!=" | "<" | "<=" | ">" | ">=") operand
                          | "in" operand | "not" "in" operand ]
    operand    := literal | list | path
    list       := "[" [ literal ("," literal)* ] "]"
    literal    := string ('...' or "...", JSON escapes) | number | "true" | "false" | "null"
    path       := "value" ("." name | "[" (string | integer) "]")*
                | "headers" ("." name | "[" string "]")
                | "key" | "topic" | "partition" | "offset" | "timestamp"

Meaning: ``value`` is the message value parsed as JSON (a tombstone has none); ``key`` and a header are their
UTF-8 text; ``timestamp`` is milliseconds since the epoch. A path that is not there is *missing*: ``exists``
is false for it and it compares like ``null``. Comparisons never raise: values of different types are unequal
(``1 != "1"``, ``true != 1``) and ``<``/``<=``/``>``/``>=`` hold only between two numbers or two strings.
``a in b``: membership when ``b`` is a list, a substring when both are strings, a key when ``b`` is an object.
A bare operand is true only when it is the JSON ``true``.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__slots__": ()})()

KEYWORDS = frozenset({"and", "or", "not", "in", "exists", "true", "false", "null"})
ROOTS = ("value", "headers", "key", "topic", "partition", "offset", "timestamp")
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
MAX_LENGTH = 4096  # a condition is a line of config, not a program

# one regex, longest operators first; anything it does not match is an unexpected character
_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![A-Za-z_0-9]))
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.)
""", re.VERBOSE)

Getter = Callable[[Any, Any], Any]  # (message, parsed value or MISSING) -> value or MISSING
Predicate = Callable[[Any, Any], bool]


class ExpressionError(ValueError):
    """A condition that does not parse; ``column`` is 1-based."""

    def __init__(self, message: str, source: str, position: int):
        self.reason = message
        self.column = position + 1
        shown = source if len(source) <= 80 else source[:77] + "..."
        super().__init__(f"{message} at column {self.column}: {shown}")


@dataclass(frozen=True)
class Token:
    kind: str  # number | string | name | keyword | op | end
    text: str
    position: int
    value: Any = None


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(source):
        match = _TOKEN_RE.match(source, position)
        if match is None:
            if source[position] in "\"'":
                raise ExpressionError("unterminated string", source, position)
            raise ExpressionError(f"unexpected character {source[position]!r}", source, position)
        kind, text = match.lastgroup, match.group()
        if kind == "number":
            tokens.append(Token("number", text, position, float(text) if any(c in text for c in ".eE") else int(text)))
        elif kind == "string":
            tokens.append(Token("string", text, position, _unquote(text, source, position)))
        elif kind == "name":
            tokens.append(Token("keyword" if text in KEYWORDS else "name", text, position))
        elif kind == "op":
            tokens.append(Token("op", text, position))
        position = match.end()
    tokens.append(Token("end", "", len(source)))
    return tokens


_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unquote(text: str, source: str, position: int) -> str:
    """The string literal's value: JSON's escapes, plus \\' inside single quotes."""
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        escape = body[i + 1]  # the token regex guarantees a character after a backslash
        if escape in _ESCAPES:
            out.append(_ESCAPES[escape])
            i += 2
        elif escape == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2:i + 6]):
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        else:
            raise ExpressionError(f"invalid escape '\\{escape}' in a string", source, position + 1 + i)
    return "".join(out)


@dataclass(frozen=True)
class Expression:
    """A parsed condition: ``matches(message, document)`` where ``document`` is the parsed JSON value (only
    needed when ``uses_value``; pass ``MISSING`` for a tombstone)."""

    source: str
    matches: Predicate
    uses_value: bool


def parse(source: str) -> Expression:
    """Parse ``source`` into an ``Expression``; raises ``ExpressionError`` with the column of the problem."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("empty condition", source if isinstance(source, str) else "", 0)
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"condition longer than {MAX_LENGTH} characters", source[:80], MAX_LENGTH)
    parser = _Parser(source, tokenize(source))
    predicate = parser.or_expr()
    parser.expect_end()
    return Expression(source=source, matches=predicate, uses_value=parser.uses_value)


class _Parser:
    def __init__(self, source: str, tokens: list[Token]):
        self.source, self.tokens, self.index = source, tokens, 0
        self.uses_value = False
        self.depth = 0

    # ------------------------------------------------------------------ token helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at(self, kind: str, text: str | None = None) -> bool:
        token = self.token
        return token.kind == kind and (text is None or token.text == text)

    def error(self, message: str, token: Token | None = None) -> ExpressionError:
        token = token or self.token
        found = "the end of the condition" if token.kind == "end" else repr(token.text)
        return ExpressionError(f"{message}, found {found}", self.source, token.position)

    def expect(self, kind: str, text: str, what: str) -> Token:
        if not self.at(kind, text):
            raise self.error(f"expected {what}")
        return self.advance()

    def expect_end(self) -> None:
        if not self.at("end"):
            raise self.error("expected 'and', 'or' or the end of the condition")

    # ------------------------------------------------------------------ grammar
    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.at("keyword", "or"):
            self.advance()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else _any(parts)

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.at("keyword", "and"):
            self.advance()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else _all(parts)

    def not_expr(self) -> Predicate:
        self.depth += 1
        if self.depth > 100:
            raise self.error("condition nested too deeply")
        try:
            if self.at("keyword", "not"):
                self.advance()
                inner = self.not_expr()
                return lambda m, d: not inner(m, d)
            if self.at("op", "("):
                self.advance()
                inner = self.or_expr()
                self.expect("op", ")", "')'")
                return inner
            return self.predicate()
        finally:
            self.depth -= 1

    def predicate(self) -> Predicate:
        if self.at("keyword", "exists"):
            self.advance()
            parenthesised = self.at("op", "(")
            if parenthesised:
                self.advance()
            if not (self.at("name") and self.token.text in ROOTS):
                raise self.error("expected a path after 'exists'")
            getter = self.path()
            if parenthesised:
                self.expect("op", ")", "')'")
            return lambda m, d: getter(m, d) is not MISSING
        left = self.operand()
        token = self.token
        if token.kind == "op" and token.text in COMPARISONS:
            self.advance()
            return _compare(token.text, left, self.operand())
        if token.kind == "keyword" and token.text == "in":
            self.advance()
            return _contains(left, self.operand())
        if token.kind == "keyword" and token.text == "not":
            self.advance()
            self.expect("keyword", "in", "'in' after 'not'")
            inner = _contains(left, self.operand())
            return lambda m, d: not inner(m, d)
        if left.constant:
            value = left.value
            return (lambda m, d: True) if value is True else (lambda m, d: False)
        get = left.get
        return lambda m, d: get(m, d) is True

    def operand(self) -> _Operand:
        token = self.token
        if token.kind in ("number", "string"):
            self.advance()
            return _Operand.of(token.value)
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            self.advance()
            return _Operand.of({"true": True, "false": False, "null": None}[token.text])
        if token.kind == "op" and token.text == "[":
            return _Operand.of(self.list_literal())
        if token.kind == "name":
            if token.text not in ROOTS:
                raise self.error(f"unknown name; a path starts with one of {', '.join(ROOTS)}", token)
            return _Operand(get=self.path())
        raise self.error("expected a value, a list or a path")

    def list_literal(self) -> list:
        self.expect("op", "[", "'['")
        items: list = []
        while not self.at("op", "]"):
            if items:
                self.expect("op", ",", "',' or ']'")
            token = self.token
            if token.kind in ("number", "string"):
                items.append(self.advance().value)
            elif token.kind == "keyword" and token.text in ("true", "false", "null"):
                items.append({"true": True, "false": False, "null": None}[self.advance().text])
            else:
                raise self.error("expected a literal in the list")
        self.advance()
        return items

    def path(self) -> Getter:
        root = self.advance()
        segments: list[str | int] = []
        while self.at("op", ".") or self.at("op", "["):
            if self.advance().text == ".":
                token = self.token
                if token.kind in ("name", "keyword"):
                    segments.append(self.advance().text)
                elif token.kind == "number" and isinstance(token.value, int) and token.value >= 0:
                    segments.append(self.advance().value)
                else:
                    raise self.error("expected a field name after '.'")
            else:
                token = self.token
                if token.kind == "string" or (token.kind == "number" and isinstance(token.value, int)):
                    segments.append(self.advance().value)
                else:
                    raise self.error("expected a quoted field name or an integer index in '[...]'")
                self.expect("op", "]", "']'")
        return self._getter(root, segments)

    def _getter(self, token: Token, segments: list) -> Getter:
        root = token.text
        if root == "value":
            self.uses_value = True
            return _value_getter(tuple(segments))
        if root == "headers":
            if len(segments) != 1 or not isinstance(segments[0], str):
                raise self.error("'headers' takes one header name: headers.NAME or headers[\"NAME\"]", token)
            return _header_getter(segments[0])
        if segments:
            raise self.error(f"'{root}' has no fields", token)
        return _ROOT_GETTERS[root]


# ---------------------------------------------------------------------- getters
def _value_getter(segments: tuple) -> Getter:
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


def _header_getter(name: str) -> Getter:
    def get(m, d):
        for header, value in m.headers() or ():
            if header == name:
                return None if value is None else value.decode("utf-8", "replace")
        return MISSING
    return get


def _timestamp(m, d):
    kind, ms = m.timestamp()
    return ms if kind else MISSING


_ROOT_GETTERS: dict[str, Getter] = {
    "key": lambda m, d: _text(m.key()),
    "topic": lambda m, d: m.topic(),
    "partition": lambda m, d: m.partition(),
    "offset": lambda m, d: m.offset(),
    "timestamp": _timestamp,
}


@dataclass(frozen=True)
class _Operand:
    get: Getter | None = None
    value: Any = None
    constant: bool = False

    @classmethod
    def of(cls, value) -> _Operand:
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


def _compare(op: str, left: _Operand, right: _Operand) -> Predicate:
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


def _contains(left: _Operand, right: _Operand) -> Predicate:
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


def _any(parts: list[Predicate]) -> Predicate:
    if len(parts) == 2:
        a, b = parts
        return lambda m, d: a(m, d) or b(m, d)
    return lambda m, d: any(p(m, d) for p in parts)


def _all(parts: list[Predicate]) -> Predicate:
    if len(parts) == 2:
        a, b = parts
        return lambda m, d: a(m, d) and b(m, d)
    return lambda m, d: all(p(m, d) for p in parts)
