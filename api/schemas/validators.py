"""Field validators shared by the API schemas: Kafka names, hosts, ports, and librdkafka security settings."""
from __future__ import annotations

import ipaddress
import re

from marshmallow import ValidationError, validate

TOPIC_RE = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
SECURITY_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
ENV_REFERENCE_RE = re.compile(r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$")
FILE_REFERENCE_RE = re.compile(r"^\$\{file:/[^}]*\}$")
SECRET_MARKERS = ("password", "secret", "key")
SECURITY_PREFIXES = ("security.", "sasl.", "ssl.")
SECURITY_EXTRA_NAMES = frozenset({"enable.ssl.certificate.verification", "enable.sasl.oauthbearer.unsecure.jwt"})
# documentation-only patterns (OpenAPI); the functions below are the real, stricter checks
HOST_PATTERN = (
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
    r"|^[0-9A-Fa-f:.]+$"
)
HOST_PORT_PATTERN = r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$"
TOPIC_MESSAGE = "Invalid Kafka topic name: use 1-249 characters from [a-zA-Z0-9._-], not '.' or '..'."


class FullMatch(validate.Regexp):
    """``validate.Regexp`` that matches the whole value: ``$`` alone would accept a trailing newline."""

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


def validate_topic(value: str) -> None:
    if value in (".", "..") or not TOPIC_RE.fullmatch(value):
        raise ValidationError(TOPIC_MESSAGE)


def validate_not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must not be empty or blank.")


def is_host(value: str) -> bool:
    """A DNS hostname (RFC 1123) or an IPv4/IPv6 address."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    if not value or len(value) > 253:
        return False
    labels = value.rstrip(".").split(".")
    if all(label.isdigit() for label in labels):
        return False  # looks like an IPv4 address but ip_address() refused it
    return all(HOST_LABEL_RE.fullmatch(label) for label in labels)


def validate_host(value: str) -> None:
    if not is_host(value):
        raise ValidationError("Not a valid hostname or IP address.")


def validate_host_port(value: str) -> None:
    """``host:port`` with an IPv6 host in brackets (``[::1]:9092``)."""
    message = "Expected 'host:port' with a valid hostname or IP and a port in 1-65535."
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep or ":" not in host:
            raise ValidationError(message)
    else:
        host, sep, port = value.rpartition(":")
        if not sep or ":" in host:
            raise ValidationError(message)
    if not (port.isdigit() and 1 <= int(port) <= 65535 and is_host(host)):
        raise ValidationError(message)


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
