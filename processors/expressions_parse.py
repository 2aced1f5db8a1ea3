"""The ``filter`` condition's tokenizer and parser: a condition is parsed once into the closures of
processors/expressions.py (which holds what they mean), never ``eval``ed.

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

A condition that does not parse raises ``ExpressionError`` (processors.expressions) with the column of the problem.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from processors.expressions import (
    MISSING,
    ROOT_GETTERS,
    ExpressionError,
    Getter,
    Operand,
    Predicate,
    all_of,
    any_of,
    compare,
    header_getter,
    membership,
    value_getter,
)

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
        return parts[0] if len(parts) == 1 else any_of(parts)

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.at("keyword", "and"):
            self.advance()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else all_of(parts)

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
            return compare(token.text, left, self.operand())
        if token.kind == "keyword" and token.text == "in":
            self.advance()
            return membership(left, self.operand())
        if token.kind == "keyword" and token.text == "not":
            self.advance()
            self.expect("keyword", "in", "'in' after 'not'")
            inner = membership(left, self.operand())
            return lambda m, d: not inner(m, d)
        if left.constant:
            value = left.value
            return (lambda m, d: True) if value is True else (lambda m, d: False)
        get = left.get
        return lambda m, d: get(m, d) is True

    def operand(self) -> Operand:
        token = self.token
        if token.kind in ("number", "string"):
            self.advance()
            return Operand.of(token.value)
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            self.advance()
            return Operand.of({"true": True, "false": False, "null": None}[token.text])
        if token.kind == "op" and token.text == "[":
            return Operand.of(self.list_literal())
        if token.kind == "name":
            if token.text not in ROOTS:
                raise self.error(f"unknown name; a path starts with one of {', '.join(ROOTS)}", token)
            return Operand(get=self.path())
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
            return value_getter(tuple(segments))
        if root == "headers":
            if len(segments) != 1 or not isinstance(segments[0], str):
                raise self.error("'headers' takes one header name: headers.NAME or headers[\"NAME\"]", token)
            return header_getter(segments[0])
        if segments:
            raise self.error(f"'{root}' has no fields", token)
        return ROOT_GETTERS[root]
