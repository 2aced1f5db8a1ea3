"""The librdkafka settings a user may give (a consumer's ``security``, a ``kafka_forward``'s ``security``).

An explicit allowlist: every key has a kind, and every other key is refused — ``sasl.kerberos.kinit.cmd``
(a shell command librdkafka runs), ``ssl.engine.*`` and ``plugin.library.paths`` (shared libraries it loads),
and whatever else would override the delivery settings kcm owns. Kinds:

- ``choice``: one of a few values (case-insensitive, as librdkafka reads them);
- ``flag``: true/false;
- ``secret``: only a secret reference (``schema.secrets``), never the value itself;
- ``text``: plain text or a secret reference (a user name, a client id);
- ``path``: a file under ``KCM_SECRETS_DIR`` (``*.location``);
- ``url``: a URL that passes the broker address policy (``schema.brokers``), or a reference to one.

``check`` is the API's rule and the worker's re-check at start (a row planted by hand gets no further);
``resolve`` turns the references into values for librdkafka, in the worker's memory only.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from schema import secrets
from schema.brokers import BrokerPolicy
from schema.secrets import Redactor, SecretPolicy


@dataclass(frozen=True)
class Kind:
    name: str
    choices: tuple[str, ...] = ()


CHOICE = "choice"
FLAG = "flag"
SECRET = "secret"
TEXT = "text"
PATH = "path"
URL = "url"
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")

ALLOWED: dict[str, Kind] = {
    "security.protocol": Kind(CHOICE, ("plaintext", "ssl", "sasl_plaintext", "sasl_ssl")),
    "sasl.mechanism": Kind(CHOICE, SASL_MECHANISMS),
    "sasl.mechanisms": Kind(CHOICE, SASL_MECHANISMS),
    "sasl.username": Kind(TEXT),
    "sasl.password": Kind(SECRET),
    "sasl.oauthbearer.method": Kind(CHOICE, ("default", "oidc")),
    "sasl.oauthbearer.client.id": Kind(TEXT),
    "sasl.oauthbearer.client.secret": Kind(SECRET),
    "sasl.oauthbearer.token.endpoint.url": Kind(URL),
    "sasl.oauthbearer.scope": Kind(TEXT),
    "sasl.oauthbearer.extensions": Kind(TEXT),
    "ssl.key.pem": Kind(SECRET),
    "ssl.certificate.pem": Kind(SECRET),
    "ssl.ca.pem": Kind(SECRET),
    "ssl.key.password": Kind(SECRET),
    "ssl.ca.location": Kind(PATH),
    "ssl.certificate.location": Kind(PATH),
    "ssl.key.location": Kind(PATH),
    "enable.ssl.certificate.verification": Kind(FLAG),
    "ssl.endpoint.identification.algorithm": Kind(CHOICE, ("none", "https")),
}
# the ones people reach for first, refused with the reason (the others: "not on the list")
DANGEROUS_PREFIXES = {
    "sasl.kerberos.": "librdkafka runs sasl.kerberos.kinit.cmd as a shell command; GSSAPI is not supported",
    "ssl.engine.": "an OpenSSL engine is a shared library librdkafka loads",
    "plugin.library.paths": "plugins are shared libraries librdkafka loads",
    "ssl_engine_": "an OpenSSL engine is a shared library librdkafka loads",
}
MAX_TEXT = 4096
_FLAGS = {"true": True, "false": False}
_ECHOED_VALUE = re.compile(r'Invalid value ".*?" for configuration property "([^"]+)"', re.DOTALL)


class SettingRefused(ValueError):
    """The settings break the allowlist: ``errors`` maps each key to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{key}: {' '.join(messages)}" for key, messages in errors.items()))
        self.errors = errors


def allowed_keys() -> str:
    return ", ".join(ALLOWED)


def _refusal(key: str) -> str:
    for prefix, reason in DANGEROUS_PREFIXES.items():
        if key.lower().startswith(prefix):
            return f"Setting {key!r} is refused: {reason}."
    return f"Setting {key!r} is not allowed here; allowed: {allowed_keys()}."


def _check_value(key: str, kind: Kind, value, policy: SecretPolicy | None, brokers: BrokerPolicy) -> str | None:
    if isinstance(value, bool) and kind.name != FLAG:
        return "Must be a string."
    if kind.name == FLAG:
        if isinstance(value, bool) or (isinstance(value, str) and value.lower() in _FLAGS):
            return None
        return "Must be true or false."
    if not isinstance(value, str):
        return "Must be a string."
    if kind.name == SECRET:
        return secrets.check(value, policy)
    if secrets.looks_like_reference(value):
        if kind.name == PATH:
            return "Must be a path, not a reference (the file itself is the secret)."
        return secrets.check(value, policy)  # a value given by reference: checked again once resolved
    return _check_plain(key, kind, value, policy, brokers)


def _check_plain(key: str, kind: Kind, value: str, policy: SecretPolicy | None, brokers: BrokerPolicy) -> str | None:
    if kind.name == CHOICE:
        if value.lower() in (c.lower() for c in kind.choices):
            return None
        return f"Must be one of: {', '.join(kind.choices)}."
    if kind.name == PATH:
        if key == "ssl.ca.location" and value == "probe":  # librdkafka: use the system's CA bundle
            return None
        return secrets.check_path(value, policy)
    if kind.name == URL:
        return brokers.check_url(value)
    if len(value) > MAX_TEXT or any(c in value for c in "\r\n\x00"):
        return f"Must be one line of at most {MAX_TEXT} characters."
    return None


def check(settings: Mapping | None, policy: SecretPolicy | None, brokers: BrokerPolicy) -> dict[str, list[str]]:
    """The errors of a ``security`` mapping, by key (empty: allowed)."""
    errors: dict[str, list[str]] = {}
    for key, value in (settings or {}).items():
        kind = ALLOWED.get(key) if isinstance(key, str) else None
        if kind is None:
            errors[str(key)] = [_refusal(str(key))]
            continue
        message = _check_value(key, kind, value, policy, brokers)
        if message is not None:
            errors[key] = [message]
    return errors


def resolve(settings: Mapping | None, policy: SecretPolicy, brokers: BrokerPolicy, environ=None,
            redactor: Redactor | None = None) -> dict:
    """The settings for librdkafka: checked (``SettingRefused``), references resolved (``secrets.SecretError``),
    a resolved value checked as a plain one would be (a token URL from a reference meets the broker policy).
    Every resolved value is added to ``redactor``, so the caller can clean librdkafka's messages."""
    errors = check(settings, policy, brokers)
    if errors:
        raise SettingRefused(errors)
    resolved = {}
    for key, value in (settings or {}).items():
        kind = ALLOWED[key]
        if isinstance(value, str) and secrets.looks_like_reference(value):
            plain = secrets.resolve(value, policy, environ)
            if redactor is not None:
                redactor.add(value, plain)
            problem = None if kind.name in (SECRET, TEXT) else _check_plain(key, kind, plain, policy, brokers)
            if problem is not None:
                raise secrets.SecretReferenceInvalid(value, f"a valid value for {key}: {problem}")
            value = plain
        elif kind.name == FLAG and isinstance(value, str):
            value = _FLAGS[value.lower()]
        resolved[key] = value
    return resolved


def refused_message(text: str, settings: Mapping | None, redactor: Redactor) -> str:
    """librdkafka's refusal of a configuration, safe to log and store: a value it echoes for a property given
    by reference becomes ``SecretReferenceInvalid`` naming that reference, any other echoed value the
    property's name, and no resolved secret survives anywhere in the text."""
    match = _ECHOED_VALUE.search(text)
    if match is not None:
        reference = (settings or {}).get(match.group(1))
        if isinstance(reference, str) and secrets.parse(reference) is not None:
            return str(secrets.SecretReferenceInvalid(reference, f"a valid value for {match.group(1)}"))
        text = _ECHOED_VALUE.sub(r'the value of configuration property "\1" was refused', text)
    return redactor(text)
