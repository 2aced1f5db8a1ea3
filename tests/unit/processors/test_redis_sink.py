"""redis_sink's pure rules: key templates and the control-plane guard."""
from __future__ import annotations

import pytest
from marshmallow import ValidationError

from processors.base import PoisonMessageError, Record
from processors.redis_sink import (
    CONTROL_PLANE_MESSAGE,
    TEMPLATE_FIELDS,
    RedisSinkProcessor,
    Template,
    check_target_url,
)


def test_template_renders_coordinates_and_the_raw_key_bytes():
    template = Template("{topic}:{partition}:{offset}:{key}:{{x}}", TEMPLATE_FIELDS["key"])
    assert template.render(Record("orders", 2, 41, b"v", key_=b"\xff1")) == b"orders:2:41:\xff1:{x}"
    assert template.uses_key and not template.static
    assert Template("fixed", TEMPLATE_FIELDS["stream"]).static


def test_template_with_key_refuses_a_message_without_one():
    with pytest.raises(PoisonMessageError, match="orders/0@3"):
        Template("{key}", TEMPLATE_FIELDS["key"]).render(Record("orders", 0, 3, b"v"))


@pytest.mark.parametrize("text", ["{offset}", "{topic.__class__}", "{topic!r}", "{topic:>10}", "{", ""])
def test_stream_template_refuses_other_fields_conversions_and_bad_braces(text):
    with pytest.raises(ValueError):
        Template(text, TEMPLATE_FIELDS["stream"])


@pytest.mark.parametrize(("url", "refused"), [
    ("redis://127.0.0.1:16379/8", True),
    ("redis://localhost:16379/8", True),
    ("redis://:secret@127.0.0.1:16379/8", True),
    ("redis://127.0.0.1:16379/9", False),
    ("redis://127.0.0.1:6379/8", False),
    ("redis://cache.internal:16379/8", False),
])
def test_control_plane_is_the_same_host_port_and_db(url, refused):
    problem = check_target_url(url, "redis://127.0.0.1:16379/8", allow_control_plane=False)
    assert (problem == CONTROL_PLANE_MESSAGE) is refused
    assert check_target_url(url, "redis://127.0.0.1:16379/8", allow_control_plane=True) is None


def test_target_must_be_a_redis_url():
    assert "redis://" in check_target_url("http://x/", "redis://127.0.0.1/0", False)


@pytest.mark.parametrize(("config", "field"), [
    ({}, "url"),
    ({"url": "redis://127.0.0.1:6379/1"}, "url"),
    ({"url": "${env:KCM_SECRET_R}", "mode": "list"}, "mode"),
    ({"url": "${env:KCM_SECRET_R}", "stream": "{nope}"}, "stream"),
    ({"url": "${env:KCM_SECRET_R}", "key": "{value}"}, "key"),
    ({"url": "${env:KCM_SECRET_R}", "maxlen": 0}, "maxlen"),
    ({"url": "${env:KCM_SECRET_R}", "ttl_seconds": -1}, "ttl_seconds"),
    ({"url": "${env:KCM_SECRET_R}", "colour": "red"}, "colour"),
])
def test_config_errors_name_the_field(config, field):
    with pytest.raises(ValidationError) as caught:
        RedisSinkProcessor.validate_config(config)
    assert field in caught.value.messages, caught.value.messages
