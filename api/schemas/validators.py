"""Field validators shared by the API schemas: Kafka names, hosts, ports, and librdkafka security settings.

The name rules themselves live in ``schema.names`` (shared with the processors); here they become marshmallow
validators and fields."""
from __future__ import annotations

import re

from marshmallow import ValidationError, fields

from schema import names
from schema.names import HOST_PORT_MESSAGE, MAX_BOOTSTRAP_SERVERS, TOPIC_MESSAGE, is_host

__all__ = ["TOPIC_MESSAGE", "HOST_PORT_MESSAGE", "MAX_BOOTSTRAP_SERVERS", "is_host"]

SECURITY_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
ENV_REFERENCE_RE = re.compile(r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$")
FILE_REFERENCE_RE = re.compile(r"^\$\{file:/[^}]*\}$")
SECRET_MARKERS = ("password", "secret", "key")
SECURITY_PREFIXES = ("security.", "sasl.", "ssl.")
SECURITY_EXTRA_NAMES = frozenset({"enable.ssl.certificate.verification", "enable.sasl.oauthbearer.unsecure.jwt"})
# documentation-only patterns (OpenAPI); schema.names holds the real, stricter checks
HOST_PATTERN = (
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
    r"|^[0-9A-Fa-f:.]+$"
)
HOST_PORT_PATTERN = r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$"
TOPIC_PATTERN = r"^[a-zA-Z0-9._-]{1,249}$"


def validate_topic(value: str) -> None:
    try:
        names.check_topic(value)
    except names.InvalidName as exc:
        raise ValidationError(str(exc)) from None


def validate_not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must not be empty or blank.")


def validate_host(value: str) -> None:
    if not is_host(value):
        raise ValidationError("Not a valid hostname or IP address.")


def validate_host_port(value: str) -> None:
    """``host:port`` with an IPv6 host in brackets (``[::1]:9092``)."""
    try:
        names.check_host_port(value)
    except names.InvalidName as exc:
        raise ValidationError(str(exc)) from None


class BootstrapServers(fields.List):
    """A cluster's ``host:port`` list, given as a list or as one ``"h1:9092,h2:9092"`` string; loads as the list
    (``schema.names.bootstrap_servers``, the rule the kafka_forward processor uses too)."""

    def __init__(self, **kwargs):
        super().__init__(fields.String(metadata={"pattern": HOST_PORT_PATTERN}), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return names.bootstrap_servers(value)
        except names.InvalidEntries as exc:
            # valid_data as fields.List gives it: the schema-level broker-form check still sees the good entries
            raise ValidationError({index: [message] for index, message in exc.entries.items()},
                                  valid_data=exc.valid) from None
        except names.InvalidName as exc:
            raise ValidationError(str(exc)) from None


def is_security_setting(name: str) -> bool:
    """Keys of ``security`` are limited to authentication/encryption: anything else (``enable.auto.commit``,
    ``group.id`` ...) would override the settings the worker's delivery guarantee depends on."""
    return name.startswith(SECURITY_PREFIXES) or name in SECURITY_EXTRA_NAMES


def is_secret_setting(name: str) -> bool:
    """librdkafka settings whose value is a secret. ``*.location`` settings hold a path, not the secret."""
    lowered = name.lower()
    return any(marker in lowered for marker in SECRET_MARKERS) and not lowered.endswith(".location")


def is_reference(value: object) -> bool:
    if not isinstance(value, str):
        return False
    return bool(ENV_REFERENCE_RE.fullmatch(value) or FILE_REFERENCE_RE.fullmatch(value))


def validate_security(settings: dict) -> None:
    """Every key a librdkafka name; values scalars; secrets only as ``${env:NAME}`` / ``${file:/abs/path}``."""
    errors: dict[str, list[str]] = {}
    for name, value in settings.items():
        if not isinstance(name, str) or not SECURITY_KEY_RE.fullmatch(name):
            errors[str(name)] = ["Not a librdkafka setting name (lower-case letters, digits, '.', '_', '-')."]
        elif not is_security_setting(name):
            errors[name] = [
                "Only security settings belong here (security.*, sasl.*, ssl.*, "
                + ", ".join(sorted(SECURITY_EXTRA_NAMES)) + "); kcm owns the other consumer settings."
            ]
        elif isinstance(value, (dict, list)) or value is None:
            errors[name] = ["Must be a string, number or boolean."]
        elif is_secret_setting(name) and not is_reference(value):
            errors[name] = [
                "Secret-bearing setting: give a reference '${env:NAME}' or '${file:/absolute/path}', "
                "never the secret itself."
            ]
    if errors:
        raise ValidationError(errors)
