"""schema.kafka_settings: the librdkafka allowlist, each key's kind, and the resolve the worker applies."""
from __future__ import annotations

import pytest

from schema import kafka_settings
from schema.brokers import BrokerPolicy
from schema.secrets import Redactor, SecretError, SecretPolicy, SecretReferenceInvalid

POLICY = SecretPolicy(env_prefix="KCM_SECRET_", secrets_dir="/run/secrets")
OPEN = BrokerPolicy()


@pytest.mark.parametrize("key", ["sasl.kerberos.kinit.cmd", "sasl.kerberos.keytab", "ssl.engine.location",
                                 "ssl.engine.id", "plugin.library.paths", "enable.auto.commit", "group.id",
                                 "bootstrap.servers", "partition.assignment.strategy", "ssl.keystore.location",
                                 "enable.sasl.oauthbearer.unsecure.jwt", "SASL.PASSWORD", "debug"])
def test_keys_off_the_list_are_refused_naming_the_key(key):
    errors = kafka_settings.check({key: "x"}, POLICY, OPEN)
    assert list(errors) == [key] and key in errors[key][0]


def test_the_command_and_library_keys_say_why():
    errors = kafka_settings.check({"sasl.kerberos.kinit.cmd": "touch /tmp/x", "ssl.engine.location": "/x.so",
                                   "plugin.library.paths": "/x.so"}, POLICY, OPEN)
    assert "shell command" in errors["sasl.kerberos.kinit.cmd"][0]
    assert "shared library" in errors["ssl.engine.location"][0]
    assert "shared libraries" in errors["plugin.library.paths"][0]
    assert "touch" not in str(errors)


def test_a_full_scram_and_tls_setup_is_allowed():
    assert kafka_settings.check({
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "kcm",
        "sasl.password": "${env:KCM_SECRET_KAFKA_PASSWORD}", "ssl.ca.location": "/run/secrets/ca.pem",
        "ssl.certificate.pem": "${file:/run/secrets/client.pem}", "ssl.key.pem": "${file:/run/secrets/key.pem}",
        "ssl.key.password": "${env:KCM_SECRET_KEY_PW}", "enable.ssl.certificate.verification": True,
        "ssl.endpoint.identification.algorithm": "https",
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example.com/token",
    }, POLICY, OPEN) == {}


@pytest.mark.parametrize("key,value,words", [
    ("sasl.password", "hunter2", "reference"),
    ("sasl.password", "${env:HOME}", "KCM_SECRET_"),
    ("ssl.key.pem", "${file:/etc/ssl/private/key.pem}", "/run/secrets"),
    ("ssl.ca.location", "/etc/passwd", "/run/secrets"),
    ("ssl.key.location", "/run/secrets/../../etc/shadow", "/run/secrets"),
    ("ssl.ca.location", "${file:/run/secrets/ca.pem}", "not a reference"),
    ("security.protocol", "carrier-pigeon", "one of"),
    ("sasl.mechanism", "GSSAPI", "one of"),
    ("enable.ssl.certificate.verification", "maybe", "true or false"),
    ("sasl.oauthbearer.token.endpoint.url", "https://169.254.169.254/latest/meta-data", "metadata"),
    ("sasl.oauthbearer.token.endpoint.url", "file:///etc/passwd", "https"),
    ("sasl.username", "a\nb", "one line"),
    ("sasl.username", {"nested": 1}, "string"),
])
def test_each_kind_refuses_what_it_must(key, value, words):
    errors = kafka_settings.check({key: value}, POLICY, OPEN)
    assert words in errors[key][0], errors
    assert "hunter2" not in str(errors)


def test_resolve_rechecks_and_resolves_and_feeds_the_redactor():
    redact = Redactor()
    resolved = kafka_settings.resolve({"security.protocol": "SASL_PLAINTEXT", "sasl.username": "kcm",
                                       "sasl.password": "${env:KCM_SECRET_PW}",
                                       "enable.ssl.certificate.verification": "false"},
                                      POLICY, OPEN, {"KCM_SECRET_PW": "pw-1234"}, redact)
    assert resolved["sasl.password"] == "pw-1234" and resolved["enable.ssl.certificate.verification"] is False
    assert redact("bad pw-1234") == "bad ${env:KCM_SECRET_PW}"
    with pytest.raises(kafka_settings.SettingRefused, match="sasl.kerberos.kinit.cmd"):
        kafka_settings.resolve({"sasl.kerberos.kinit.cmd": "touch /tmp/x"}, POLICY, OPEN, {})
    with pytest.raises(SecretError, match="not set"):
        kafka_settings.resolve({"sasl.password": "${env:KCM_SECRET_PW}"}, POLICY, OPEN, {})


def test_a_value_from_a_reference_meets_the_rule_of_its_key_once_resolved():
    with pytest.raises(SecretReferenceInvalid, match=r"\$\{env:KCM_SECRET_URL\}") as bad:
        kafka_settings.resolve({"sasl.oauthbearer.token.endpoint.url": "${env:KCM_SECRET_URL}"}, POLICY,
                               OPEN, {"KCM_SECRET_URL": "http://169.254.169.254/token"})
    assert "169.254" not in str(bad.value)
    with pytest.raises(SecretReferenceInvalid, match="security.protocol"):
        kafka_settings.resolve({"security.protocol": "${env:KCM_SECRET_P}"}, POLICY, OPEN, {"KCM_SECRET_P": "s3cr"})


def test_librdkafkas_echo_of_a_referenced_value_names_the_reference():
    settings = {"security.protocol": "${env:KCM_SECRET_P}", "sasl.password": "${env:KCM_SECRET_PW}"}
    redact = Redactor([("${env:KCM_SECRET_P}", "s3cr-proto"), ("${env:KCM_SECRET_PW}", "s3cr-pw")])
    echoed = kafka_settings.refused_message(
        'Invalid value "s3cr-proto" for configuration property "security.protocol"', settings, redact)
    assert echoed == "SecretReferenceInvalid: ${env:KCM_SECRET_P} is not a valid value for security.protocol"
    elsewhere = kafka_settings.refused_message("Failed: bad password s3cr-pw here", settings, redact)
    assert "s3cr" not in elsewhere and "${env:KCM_SECRET_PW}" in elsewhere
    plain = "Failed to create consumer: Unsupported SASL mechanism: NOPE"
    assert kafka_settings.refused_message(plain, settings, redact) == plain
