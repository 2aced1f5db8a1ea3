"""http_sink's pure rules: Retry-After, what an HTTP status means, the body per message."""
from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from marshmallow import ValidationError

from processors.base import FatalError, PoisonMessageError, Record, RetriableError
from processors.http_sink import HttpSinkProcessor, envelopes, parse_retry_after, status_error


def test_retry_after_reads_seconds_and_http_dates_and_ignores_garbage():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True),
                             now=now.timestamp()) == pytest.approx(30)
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now.timestamp()) == 0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None and parse_retry_after("") is None


@pytest.mark.parametrize(("status", "error"), [
    (200, None), (204, None), (408, RetriableError), (429, RetriableError), (500, RetriableError),
    (503, RetriableError), (400, PoisonMessageError), (413, PoisonMessageError), (422, PoisonMessageError),
    (401, FatalError), (403, FatalError), (404, FatalError), (301, FatalError), (307, FatalError),
])
def test_status_classification(status, error):
    assert status_error(status) is error


def test_envelope_carries_coordinates_and_decodes_the_value_as_json_then_text_then_base64():
    batch = [Record("t", 1, 5, b'{"seq": 5}', key_=b"k5", headers_=(("h", b"v"),), timestamp_=(1, 1700)),
             Record("t", 1, 6, b"plain text", key_=b"\xff\x00"),
             Record("t", 1, 7, b"\xff\xfe"),
             Record("t", 1, 8, None)]
    out = envelopes(batch, "auto")
    assert out[0] == {"topic": "t", "partition": 1, "offset": 5, "timestamp": 1700, "key": "k5",
                      "headers": [{"key": "h", "value": "v"}], "value": {"seq": 5}, "value_encoding": "json"}
    assert (out[1]["value"], out[1]["value_encoding"]) == ("plain text", "text")
    assert (out[1]["key"], out[1]["key_encoding"]) == (base64.b64encode(b"\xff\x00").decode(), "base64")
    assert (out[2]["value"], out[2]["value_encoding"]) == (base64.b64encode(b"\xff\xfe").decode(), "base64")
    assert out[3]["value"] is None and "value_encoding" not in out[3] and out[3]["timestamp"] is None
    assert envelopes(batch[:1], "text")[0]["value"] == '{"seq": 5}'
    assert envelopes(batch[:1], "base64")[0]["value"] == base64.b64encode(b'{"seq": 5}').decode()


def test_value_format_json_makes_a_value_that_does_not_parse_a_poison_message():
    with pytest.raises(PoisonMessageError, match="t/0@3"):
        envelopes([Record("t", 0, 3, b"not json")], "json")


@pytest.mark.parametrize(("config", "field"), [
    ({}, "url"),
    ({"url": "ftp://example.com/x"}, "url"),
    ({"url": "http://169.254.169.254/latest/meta-data/"}, "url"),
    ({"url": "http://[::ffff:169.254.169.254]/"}, "url"),
    ({"url": "http://metadata.google.internal/"}, "url"),
    ({"url": "http://user:pw@example.com/"}, "url"),
    ({"url": "http://example.com/", "headers": {"bad name": "x"}}, "headers"),
    ({"url": "http://example.com/", "headers": {"Content-Length": "1"}}, "headers"),
    ({"url": "http://example.com/", "headers": {"X-A": "a\r\nX-B: b"}}, "headers"),
    ({"url": "http://example.com/", "value_format": "xml"}, "value_format"),
    ({"url": "http://example.com/", "read_timeout": 0}, "read_timeout"),
    ({"url": "http://example.com/", "check_path": "health"}, "check_path"),
    ({"url": "http://example.com/", "colour": "red"}, "colour"),
])
def test_config_errors_name_the_field(config, field):
    with pytest.raises(ValidationError) as caught:
        HttpSinkProcessor.validate_config(config)
    assert field in caught.value.messages, caught.value.messages
