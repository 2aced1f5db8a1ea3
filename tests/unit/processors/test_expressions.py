"""The filter condition language (processors/expressions.py): parsing, errors with their column, semantics."""
from __future__ import annotations

import json

import pytest

from processors.base import Record
from processors.expressions import MISSING, ExpressionError
from processors.expressions_parse import parse, tokenize

ORDER = {"order": {"total": 120.5, "items": [{"sku": "A-1"}, {"sku": "B-2"}], "currency": "EUR"},
         "status": "paid", "vip": True, "tags": ["new", "web"], "note": None, "count": 3}


def _message(value=ORDER, *, key=b"customer-7", headers=(("source", b"web"), ("x-trace", b"t1")), topic="orders",
             partition=2, offset=41, timestamp=(1, 1_700_000_000_000)):
    raw = json.dumps(value).encode() if value is not None and not isinstance(value, bytes) else value
    return Record(topic, partition, offset, raw, key_=key, headers_=headers, timestamp_=timestamp)


def matches(condition: str, message=None, document=ORDER) -> bool:
    message = message or _message()
    return parse(condition).matches(message, document)


@pytest.mark.parametrize("condition, expected", [
    ("value.order.total >= 100", True),
    ("value.order.total > 120.5", False),
    ("value.order.total <= 120.5 and value.order.total < 121", True),
    ("value.count == 3", True),
    ("value.count == 3.0", True),
    ("value.count != 3", False),
    ("value.status == 'paid'", True),
    ('value.status == "shipped"', False),
    ("value.status in ['paid', 'shipped']", True),
    ("value.status not in ['paid', 'shipped']", False),
    ("'web' in value.tags", True),
    ("'old' in value.tags", False),
    ("'ai' in value.status", True),  # substring of a string
    ("'order' in value", True),  # a key of an object
    ("value.order.currency in value.tags", False),
    ("value.vip", True),
    ("value.vip == true", True),
    ("not value.vip", False),
    ("value.order.items[1].sku == 'B-2'", True),
    ("value.order.items.0.sku == 'A-1'", True),
    ("value.order.items[5].sku == 'A-1'", False),
    ('value["order"]["currency"] == "EUR"', True),
    ("exists value.note", True),  # present, even though null
    ("exists value.missing", False),
    ("exists(value.order.total)", True),
    ("value.note == null and value.missing == null", True),
    ("value.missing != 5", True),
    ("key == 'customer-7'", True),
    ("topic == 'orders' and partition == 2 and offset >= 41", True),
    ("timestamp > 1600000000000", True),
    ("headers.source == 'web'", True),
    ('headers["x-trace"] == "t1"', True),
    ("exists headers.absent", False),
    ("(value.status == 'refunded' or value.vip) and not value.order.total < 100", True),
    ("value.status == 'refunded' or value.status == 'paid' and value.count > 5", False),  # and binds tighter
    ("value.count > -1", True),
    ("value.order.total > 1e2", True),
])
def test_conditions_mean_what_the_grammar_says(condition, expected):
    assert matches(condition) is expected


@pytest.mark.parametrize("condition", [
    "value.count == '3'",  # a string is not a number
    "value.vip == 1",  # a bool is not a number
    "value.count == true",
    "value.status > 5",  # ordering across types never holds
    "value.order > 1",
    "value.missing < 1",
    "value.tags == 'new'",
    "value.missing",  # a bare operand is true only when it is true
    "value.status",
])
def test_comparisons_across_types_are_false_not_errors(condition):
    assert matches(condition) is False


def test_literal_lists_and_equality_keep_bool_and_numbers_apart():
    assert matches("value.count in [1, 2, 3]") and not matches("value.vip in [1]")
    assert matches("value.vip in [true]") and matches("value.note in [null]") and matches("value.missing in [null]")
    assert matches("value.order.total in [120.5]") and not matches("value.status in []")


def test_a_tombstone_has_no_value_and_a_missing_key_is_null():
    tombstone = _message(None, key=None, headers=None, timestamp=(0, 0))
    assert parse("exists value").matches(tombstone, MISSING) is False
    assert parse("value.a == null and key == null").matches(tombstone, MISSING) is True
    assert parse("exists key or exists timestamp or exists headers.source").matches(tombstone, MISSING) is False


def test_a_condition_without_value_does_not_need_the_document():
    expression = parse("headers.source == 'web' and key != 'x'")
    assert expression.uses_value is False and expression.matches(_message(b"not json"), MISSING) is True
    assert parse("value.a == 1 or key == 'k'").uses_value is True


def test_non_utf8_key_and_header_are_compared_as_replaced_text():
    message = _message(key=b"\xff", headers=(("source", b"\xfeweb"),))
    assert parse("key == '\ufffd' and headers.source == '\ufffdweb'").matches(message, MISSING)


def test_string_escapes():
    assert matches(r'value.s == "a\"b\\c\u00e9\n"', document={"s": 'a"b\\cé\n'})
    assert matches(r"value.s == 'it\'s'", document={"s": "it's"})
    assert matches("value.s == 'say \"hi\"'", document={"s": 'say "hi"'})


@pytest.mark.parametrize("condition, column, reason", [
    ("value.total > ", 15, "expected a value, a list or a path"),
    ("value.total >> 3", 14, "expected a value, a list or a path"),
    ("valu.total > 3", 1, "unknown name"),
    ("value.total = 3", 13, "unexpected character '='"),
    ("value.total > 3 and", 20, "expected a value, a list or a path"),
    ("(value.a == 1", 14, "expected ')'"),
    ("value.a == 1)", 13, "expected 'and', 'or' or the end"),
    ("value.a == 'open", 12, "unterminated string"),
    ("value.a in [1, value.b]", 16, "expected a literal in the list"),
    ("exists 3", 8, "expected a path after 'exists'"),
    ("headers.a.b == 1", 1, "'headers' takes one header name"),
    ("key.x == 1", 1, "'key' has no fields"),
    ("value. == 1", 8, "expected a field name after '.'"),
    ("value.a not 3", 13, "expected 'in' after 'not'"),
    ("value.a == 'x\\q'", 14, "invalid escape"),
    ("", 1, "empty condition"),
    ("   ", 1, "empty condition"),
])
def test_parse_errors_name_the_column(condition, column, reason):
    with pytest.raises(ExpressionError) as caught:
        parse(condition)
    assert caught.value.column == column, str(caught.value)
    assert reason in str(caught.value) and f"column {column}" in str(caught.value)


def test_deep_nesting_and_long_conditions_are_refused_not_a_crash():
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("(" * 200 + "value.a == 1" + ")" * 200)
    with pytest.raises(ExpressionError, match="longer than"):
        parse("value.a == 1 or " * 400 + "value.a == 2")


def test_no_python_evaluation_reaches_the_interpreter():
    for hostile in ("__import__('os').system('true')", "lambda: 1", "value.a == 1; 2", "value.a.__class__()"):
        with pytest.raises(ExpressionError):
            parse(hostile)
    # a field called __class__ is an ordinary JSON key
    assert matches("value['__class__'] == 'x'", document={"__class__": "x"})


def test_tokens_carry_their_positions():
    tokens = tokenize("value.a >= -2.5e1")
    assert [(t.kind, t.position) for t in tokens] == [("name", 0), ("op", 5), ("name", 6), ("op", 8),
                                                       ("number", 11), ("end", 17)]
    assert tokens[4].value == -25.0
