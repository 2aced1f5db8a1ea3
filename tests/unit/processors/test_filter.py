"""The filter step on its own: config validation (422 messages with the column) and what a batch keeps."""
from __future__ import annotations

import json

import pytest
from marshmallow import ValidationError

from processors.base import PoisonMessageError, Record
from processors.filter import FilterStep


def _step(condition: str) -> FilterStep:
    step = FilterStep(FilterStep.validate_config({"condition": condition}), processor_id="f")
    step.open()
    return step


def _batch(values) -> list[Record]:
    return [Record("t", 0, i, v if isinstance(v, bytes) or v is None else json.dumps(v).encode(),
                   key_=b"k%d" % i, headers_=(("source", b"web" if i % 2 else b"app"),))
            for i, v in enumerate(values)]


def test_keeps_the_matching_messages_in_order():
    batch = _batch([{"total": t} for t in (5, 150, 99, 100, 300)])
    kept = _step("value.total >= 100").transform(batch)
    assert [m.offset() for m in kept] == [1, 3, 4]
    assert kept[0] is batch[1]  # the message itself, not a copy


def test_a_condition_on_headers_and_key_never_parses_the_value():
    batch = _batch([b"not json", b"\xff\xfe", None, b"{}"])
    kept = _step("headers.source == 'web' and key != 'k3'").transform(batch)
    assert [m.offset() for m in kept] == [1]


def test_a_value_that_is_not_json_is_poison_when_the_condition_reads_it():
    batch = _batch([{"a": 1}, b"{broken", {"a": 1}])
    with pytest.raises(PoisonMessageError, match=r"t/0@1: value is not JSON") as caught:
        _step("value.a == 1").transform(batch)
    assert "broken" not in str(caught.value)  # the payload stays out of logs and dead-letter metadata


def test_a_tombstone_is_kept_or_dropped_by_exists_value():
    batch = _batch([None, {"a": 1}])
    assert [m.offset() for m in _step("exists value").transform(batch)] == [1]
    assert [m.offset() for m in _step("not exists value").transform(batch)] == [0]


@pytest.mark.parametrize("config, field, text", [
    ({"condition": "value.total >"}, "condition", "at column 14"),
    ({"condition": ""}, "condition", "empty condition"),
    ({}, "condition", "Missing data"),
    ({"condition": "value.a == 1", "extra": 1}, "extra", "Unknown field"),
])
def test_bad_configs_are_field_messages(config, field, text):
    with pytest.raises(ValidationError) as caught:
        FilterStep.validate_config(config)
    assert text in " ".join(caught.value.messages[field])


def test_the_retry_keys_are_accepted_beside_the_condition():
    config = FilterStep.validate_config({"condition": "value.a == 1", "max_retries": 0})
    assert config["condition"] == "value.a == 1" and config["max_retries"] == 0
