"""json_transform on its own: each operation, their order, casts, masks, poison values and config errors."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from marshmallow import ValidationError

from processors.base import FatalError, PoisonMessageError, Record
from processors.context import ProcessorContext
from processors.json_transform import JsonTransformStep
from schema.settings import Settings


def _step(context=None, **config) -> JsonTransformStep:
    step = JsonTransformStep(JsonTransformStep.validate_config(config), processor_id="j", context=context)
    step.open()
    return step


def _out(step, value: dict | bytes) -> dict:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    (message,) = step.transform([Record("t", 1, 5, raw)])
    return json.loads(message.value())


def test_operations_apply_in_their_documented_order():
    step = _step(rename={"user.mail": "customer.email", "amount": "total"}, drop=["debug", "user"],
                 add={"source": "kcm", "meta.version": 2}, cast={"total": "float", "customer.id": "str"},
                 mask=["customer.email"])
    out = _out(step, {"user": {"mail": "a@example.com", "age": 40}, "amount": "12.50", "debug": True,
                      "customer": {"id": 7}})
    assert out == {"total": 12.5, "customer": {"id": "7", "email": "***"}, "source": "kcm", "meta": {"version": 2}}


def test_the_rebuilt_message_keeps_its_coordinates_key_headers_and_timestamp():
    step = _step(drop=["b"])
    message = Record("orders", 3, 99, b'{"a": 1, "b": 2}', key_=b"k", headers_=(("h", b"v"),),
                     timestamp_=(1, 1_700_000_000_123))
    (out,) = step.transform([message])
    assert (out.topic(), out.partition(), out.offset(), out.key(), out.headers(), out.timestamp()) == \
        ("orders", 3, 99, b"k", [("h", b"v")], (1, 1_700_000_000_123))
    assert out.value() == b'{"a":1}'  # compact


def test_output_is_compact_utf8_and_a_tombstone_passes_unchanged():
    step = _step()
    assert _out(step, '{ "name" : "Zoë" }'.encode()) == {"name": "Zoë"}
    (out,) = step.transform([Record("t", 0, 0, '{ "name" : "Zoë" }'.encode())])
    assert out.value() == '{"name":"Zoë"}'.encode()
    tombstone = Record("t", 0, 1, None, key_=b"k")
    assert step.transform([tombstone]) == [tombstone]


@pytest.mark.parametrize("kind, value, expected", [
    ("int", "42", 42), ("int", " -7 ", -7), ("int", "1_000", 1000), ("int", 3.0, 3), ("int", "5.0", 5), ("int", True, 1), ("int", None, None),
    ("float", "1.5", 1.5), ("float", 2, 2.0), ("float", "1e3", 1000.0), ("float", False, 0.0),
    ("str", 12, "12"), ("str", 1.5, "1.5"), ("str", True, "true"), ("str", {"a": [1]}, '{"a":[1]}'),
    ("bool", "yes", True), ("bool", "OFF", False), ("bool", 0, False), ("bool", 2, True), ("bool", "1", True),
])
def test_casts(kind, value, expected):
    out = _out(_step(cast={"x": kind}), {"x": value})
    assert out["x"] == expected and type(out["x"]) is type(expected)


@pytest.mark.parametrize("kind, value", [
    ("int", "4.5"), ("int", "twelve"), ("int", 2.5), ("int", [1]), ("int", {"a": 1}),
    ("float", "abc"), ("float", {}), ("float", "1.5.2"),
    ("bool", "maybe"), ("bool", [True]), ("bool", ""),
])
def test_a_cast_that_cannot_be_made_is_poison_and_names_the_field_not_the_value(kind, value):
    with pytest.raises(PoisonMessageError, match=rf"t/1@5: Refused: field x: .* cannot be cast to {kind}") as caught:
        _out(_step(cast={"x": kind}), {"x": value, "secret": "4111"})
    assert repr(value) not in str(caught.value) and "4111" not in str(caught.value)


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity"])
def test_a_cast_to_a_number_json_cannot_hold_is_poison(text):
    with pytest.raises(PoisonMessageError, match="not JSON compliant"):
        _out(_step(cast={"x": "float"}), {"x": text})


@pytest.mark.parametrize("raw, reason", [
    (b"{not json", "JSONDecodeError"),
    (b"\xff\xfe{}", "UnicodeDecodeError"),
    (b'{"a": NaN}', "NaN is not JSON"),
    (b'{"a": 1} trailing', "Extra data"),
    (b"[1, 2]", "a JSON array, not an object"),
])
def test_values_that_cannot_be_transformed_are_poison(raw, reason):
    with pytest.raises(PoisonMessageError, match=reason):
        _step(drop=["a"]).transform([Record("t", 1, 5, raw)])


def test_without_operations_any_json_is_normalised():
    (out,) = _step().transform([Record("t", 0, 0, b"[1, 2,  3]")])
    assert out.value() == b"[1,2,3]"


def test_missing_fields_are_left_alone_and_paths_through_non_objects_refused_only_when_writing():
    step = _step(rename={"a.b": "c"}, drop=["x.y"], cast={"n.m": "int"}, mask=["p.q"])
    assert _out(step, {"a": 5, "x": [1], "n": "s", "p": None}) == {"a": 5, "x": [1], "n": "s", "p": None}
    with pytest.raises(PoisonMessageError, match="cannot set meta.v: meta is a string, not an object"):
        _out(_step(add={"meta.v": 1}), {"meta": "text"})


def test_rename_runs_before_add_and_added_objects_are_per_message():
    step = _step(add={"tags": ["a"]}, rename={"tags": "old_tags"})
    first, second = step.transform([Record("t", 0, 0, b'{"tags": 1}'), Record("t", 0, 1, b"{}")])
    assert json.loads(first.value()) == {"old_tags": 1, "tags": ["a"]} and json.loads(second.value()) == {"tags": ["a"]}


def _context(monkeypatch, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    return ProcessorContext(settings=settings, consumer_id="c", bootstrap_servers="127.0.0.1:1")


def test_hmac_masking_is_keyed_deterministic_and_reproducible(monkeypatch):
    context = _context(monkeypatch, KCM_SECRET_PII_KEY="k3y")
    step = _step(context, mask=["email", "card"], mask_with="hmac_sha256", mask_key="${env:KCM_SECRET_PII_KEY}")
    out = _out(step, {"email": "a@example.com", "card": {"last4": 1234}, "keep": 1})
    assert out["email"] == hmac.new(b"k3y", b"a@example.com", hashlib.sha256).hexdigest()  # as openssl prints it
    assert out["card"] == hmac.new(b"k3y", b'{"last4":1234}', hashlib.sha256).hexdigest() and out["keep"] == 1
    assert _out(step, {"email": "a@example.com"})["email"] == out["email"]  # equal values stay equal
    monkeypatch.setenv("KCM_SECRET_PII_KEY", "other")
    assert _out(_step(context, mask=["email"], mask_with="hmac_sha256", mask_key="${env:KCM_SECRET_PII_KEY}"),
                {"email": "a@example.com"})["email"] != out["email"]


def test_an_unresolvable_mask_key_is_fatal_at_open_without_its_value(monkeypatch):
    context = _context(monkeypatch)
    monkeypatch.delenv("KCM_SECRET_ABSENT", raising=False)
    with pytest.raises(FatalError, match=r"KCM_SECRET_ABSENT.*not set"):
        _step(context, mask=["a"], mask_with="hmac_sha256", mask_key="${env:KCM_SECRET_ABSENT}")


@pytest.mark.parametrize("config, field, text", [
    ({"cast": {"a": "decimal"}}, "cast", "Must be one of"),
    ({"drop": ["a..b"]}, "drop", "without empty parts"),
    ({"rename": {"": "b"}}, "rename", "Length must be between 1 and 500"),
    ({"mask": ["a"], "mask_with": "hmac_sha256"}, "mask_key", "needs mask_key"),
    ({"mask": ["a"], "mask_with": "hmac_sha256", "mask_key": "plain-key"}, "mask_key", "Must be a reference"),
    ({"mask_with": "md5"}, "mask_with", "Must be one of"),
    ({"uppercase": ["a"]}, "uppercase", "Unknown field"),
])
def test_bad_configs_are_field_messages(config, field, text):
    with pytest.raises(ValidationError) as caught:
        JsonTransformStep.validate_config(config)
    assert text in json.dumps(caught.value.messages[field])


def test_librdkafka_messages_take_the_new_value_in_place_only_once_the_whole_batch_transformed():
    from confluent_kafka import Message

    def message(value: bytes) -> Message:
        m = Message()
        m.set_value(value)
        return m

    step = _step(drop=["b"])
    good = [message(b'{"a": 1, "b": 2}'), message(b'{"a": 2}')]
    assert step.transform(good) is good and [m.value() for m in good] == [b'{"a":1}', b'{"a":2}']
    mixed = [message(b'{"a": 1, "b": 2}'), message(b"{oops")]
    with pytest.raises(PoisonMessageError):
        step.transform(mixed)
    assert mixed[0].value() == b'{"a": 1, "b": 2}'  # untouched: the halves are transformed again from the original
