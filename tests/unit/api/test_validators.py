"""Pure validation rules: Kafka names, hosts, host:port lists, the security settings' field errors
(the rules themselves: tests/unit/security/)."""
from __future__ import annotations

import pytest
from marshmallow import ValidationError

from api.schemas.validators import (
    is_host,
    validate_host_port,
    validate_security,
    validate_topic,
)


@pytest.mark.parametrize("value", ["localhost", "kafka-1.example.com", "10.0.0.1", "::1", "fe80::1", "a", "k8s"])
def test_hosts_accepted(value):
    assert is_host(value)


@pytest.mark.parametrize("value", ["", "a b", "-lead.example", "trail-.example", "999.1.1.1", "1.2.3",
                                   "x" * 254, "a..b", "host\n", "under_score"])
def test_hosts_rejected(value):
    assert not is_host(value)


@pytest.mark.parametrize("value", ["k:9092", "10.0.0.1:1", "[::1]:65535", "kafka.example.com:19092"])
def test_host_port_accepted(value):
    validate_host_port(value)


@pytest.mark.parametrize("value", ["k", "k:", ":9092", "k:0", "k:65536", "::1:9092", "[::1]9092", "[k]:1",
                                   "k:90a", "bad host:1"])
def test_host_port_rejected(value):
    with pytest.raises(ValidationError):
        validate_host_port(value)


@pytest.mark.parametrize("value", [".", "..", "", "a/b", "a b", "x" * 250, "t\n", "ü"])
def test_topics_rejected(value):
    with pytest.raises(ValidationError):
        validate_topic(value)


@pytest.mark.parametrize("value", ["...", "a", "A-b_c.d", "x" * 249])
def test_topics_accepted(value):
    validate_topic(value)


def test_security_errors_are_keyed_by_setting():
    with pytest.raises(ValidationError) as caught:
        validate_security({"sasl.password": "plain", "Bad Key": "x", "ssl.ca.pem": {"a": 1},
                           "sasl.username": "ok", "ssl.key.pem": "${file:/run/secrets/key.pem}"})
    assert set(caught.value.messages) == {"sasl.password", "Bad Key", "ssl.ca.pem"}
    assert "plain" not in str(caught.value.messages)


@pytest.mark.parametrize("name", ["enable.auto.commit", "group.id", "bootstrap.servers", "auto.offset.reset",
                                  "enable.auto.offset.store", "client.id"])
def test_non_security_settings_are_refused_in_security(name):
    with pytest.raises(ValidationError) as caught:
        validate_security({name: "x"})
    assert name in caught.value.messages


def test_security_settings_are_accepted():
    validate_security({"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u",
                       "sasl.password": "${env:KCM_SECRET_P}", "ssl.ca.location": "/run/secrets/ca.pem",
                       "enable.ssl.certificate.verification": False, "ssl.key.location": "/run/secrets/key.pem"})
