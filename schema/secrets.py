"""Secret references: the one grammar, its confinement, and its resolution (standard library only).

A config never holds a secret, only a reference to one:

- ``${env:NAME}``: the environment variable NAME, which must start with ``KCM_SECRET_ENV_PREFIX``
  (default ``KCM_SECRET_``), so no reference reaches ``PATH``, ``KCM_DATABASE_URL`` or any other variable;
- ``${file:/abs/path}``: the file's content (stripped), which must lie under ``KCM_SECRETS_DIR`` (default
  ``/run/secrets``) once symlinks and ``..`` are resolved (``realpath``), checked again at every resolve.

``check`` is the rule the API applies (a message naming the rule, never the secret), ``resolve`` the one every
process applies when it connects. A resolve error and ``SecretReferenceInvalid`` name the reference, never the
value behind it; ``Redactor`` removes resolved values from third-party text (a driver's or librdkafka's message)
before it reaches a log line, Redis or a response.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_ENV_PREFIX = "KCM_SECRET_"
DEFAULT_SECRETS_DIR = "/run/secrets"
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# the whole value is one reference: no text around it, no nesting, no second reference
REFERENCE_RE = re.compile(r"\$\{(env|file):([^{}]*)\}")
GRAMMAR = "'${env:NAME}' or '${file:/absolute/path}'"
# libpq key=value DSN words whose values are worth hiding from a driver's message
_DSN_WORDS = ("password", "user", "host", "hostaddr", "dbname", "service", "passfile", "sslpassword")
_DSN_PAIR_RE = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")
_MIN_FRAGMENT = 3  # a shorter user or host name would blank unrelated words; passwords are hidden at any length


class SecretError(ValueError):
    """A reference that is malformed, not allowed, or does not resolve; the message names the reference only."""


class SecretReferenceInvalid(SecretError):
    """A reference resolved, but its value is unusable for what it feeds (a DSN, a librdkafka setting)."""

    def __init__(self, reference: str, what: str):
        super().__init__(f"SecretReferenceInvalid: {reference} is not {what}")
        self.reference = reference


@dataclass(frozen=True)
class SecretPolicy:
    """Where references may point: the environment-name prefix and the secrets directory."""

    env_prefix: str = DEFAULT_ENV_PREFIX
    secrets_dir: str = DEFAULT_SECRETS_DIR

    @classmethod
    def of(cls, settings) -> SecretPolicy:
        return cls(env_prefix=settings.secret_env_prefix, secrets_dir=settings.secrets_dir)

    def grammar(self) -> str:
        return f"'${{env:{self.env_prefix}...}}' or '${{file:{self.secrets_dir}/...}}'"

    def env_rule(self) -> str:
        return f"'${{env:NAME}}' names only variables starting with {self.env_prefix} (KCM_SECRET_ENV_PREFIX)"

    def file_rule(self) -> str:
        return f"'${{file:/path}}' names only files under {self.secrets_dir} (KCM_SECRETS_DIR)"


@dataclass(frozen=True)
class Reference:
    kind: str  # "env" | "file"
    name: str  # the variable name, or the absolute path as written
    text: str  # the reference as written, safe to show

    def __str__(self) -> str:
        return self.text


def looks_like_reference(value: object) -> bool:
    """True for any string that contains ``${``: it is meant as a reference, valid or not."""
    return isinstance(value, str) and "${" in value


def parse(value: object) -> Reference | None:
    """The reference ``value`` is, or None when it is not one (plain text). No policy check here."""
    if not isinstance(value, str):
        return None
    match = REFERENCE_RE.fullmatch(value)
    if match is None:
        return None
    return Reference(kind=match.group(1), name=match.group(2), text=value)


def under(path: str, directory: str) -> bool:
    """Whether ``path`` lies inside ``directory`` after resolving symlinks and ``..`` on both."""
    real_dir = os.path.realpath(directory)
    real = os.path.realpath(path)
    return real != real_dir and real.startswith(real_dir.rstrip(os.sep) + os.sep)


def check(value: object, policy: SecretPolicy | None) -> str | None:
    """Why ``value`` is not an allowed reference (a message naming the rule), or None when it is one.

    ``policy`` None: the grammar alone, where the policy is not known (a worker validating a config before it
    opens the processor); ``resolve`` applies the policy then."""
    ref = parse(value)
    if ref is None:
        grammar = GRAMMAR if policy is None else policy.grammar()
        return f"Must be a reference, {grammar}, never the value itself."
    if ref.kind == "env":
        if not ENV_NAME_RE.fullmatch(ref.name):
            return "'${env:NAME}': NAME must be letters, digits and '_', not starting with a digit."
        if policy is not None and (not ref.name.startswith(policy.env_prefix) or ref.name == policy.env_prefix):
            return f"Not an allowed reference: {policy.env_rule()}."
        return None
    if not ref.name.startswith("/") or "\x00" in ref.name:
        return "'${file:/path}': the path must be absolute."
    if policy is not None and not under(ref.name, policy.secrets_dir):
        return f"Not an allowed reference: {policy.file_rule()}, after resolving symlinks and '..'."
    return None


def is_allowed(value: object, policy: SecretPolicy | None) -> bool:
    return check(value, policy) is None


def check_path(value: object, policy: SecretPolicy | None) -> str | None:
    """Why ``value`` is not a file path under the secrets directory (``ssl.ca.location``, ...), or None."""
    if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
        return "Must be an absolute path under KCM_SECRETS_DIR."
    if policy is not None and not under(value, policy.secrets_dir):
        return f"Must be a path under {policy.secrets_dir} (KCM_SECRETS_DIR), after resolving symlinks and '..'."
    return None


def resolve(value: str, policy: SecretPolicy, environ: Mapping[str, str] | None = None) -> str:
    """The secret behind the reference ``value``, re-checked against ``policy`` (a row written by hand, or
    before the rule existed, gets no further than the API's check would have let it)."""
    problem = check(value, policy)
    if problem is not None:
        raise SecretError(f"secret reference {_shown(value)}: {problem}")
    ref = parse(value)
    env = os.environ if environ is None else environ
    if ref.kind == "env":
        if ref.name not in env:
            raise SecretError(f"secret reference {ref}: environment variable is not set")
        return env[ref.name]
    try:
        with open(os.path.realpath(ref.name), encoding="utf-8") as fh:
            return fh.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SecretError(f"secret reference {ref}: cannot read the file: {reason}") from None


def resolve_if_reference(value, policy: SecretPolicy, environ: Mapping[str, str] | None = None):
    """``value`` resolved when it is meant as a reference (``${``), else ``value`` unchanged."""
    if looks_like_reference(value):
        return resolve(value, policy, environ)
    return value


def _shown(value: object) -> str:
    """A rejected reference as it may appear in a message: a reference's own text, nothing else."""
    ref = parse(value)
    return ref.text if ref is not None and len(ref.text) <= 300 else "(not a reference)"


def fragments(value: str) -> list[str]:
    """The parts of a resolved secret worth hiding from third-party text: the value, and for a URL or a libpq
    DSN its password (at any length) and its user, host and database (a driver's message names those)."""
    always, named = {value}, set()
    if "://" in value:
        try:
            parts = urlsplit(value)
            if parts.password:
                always.update({parts.password, unquote(parts.password)})
            named.update(p for p in (parts.username, parts.hostname, parts.path.lstrip("/")) if p)
            if parts.username:
                named.add(unquote(parts.username))
        except ValueError:
            pass
    else:
        for word, raw in _DSN_PAIR_RE.findall(value):
            word, raw = word.lower(), raw.strip("'")
            if word in ("password", "sslpassword"):
                always.add(raw)
            elif word in _DSN_WORDS:
                named.add(raw)
    return [f for f in always if f] + [f for f in named - always if len(f) >= _MIN_FRAGMENT]


class Redactor:
    """Replaces every resolved secret in a text by the reference it came from (and its fragments by ***)."""

    def __init__(self, resolved: Iterable[tuple[str, str]] = ()):
        self._pairs: list[tuple[str, str]] = []
        for reference, value in resolved:
            self.add(reference, value)

    def add(self, reference: str, value: object) -> None:
        if isinstance(value, str) and value:
            # the whole value becomes its reference (the reader knows where to look); a fragment becomes ***
            self._pairs.extend((fragment, reference if fragment == value else "***") for fragment in fragments(value))
            self._pairs.sort(key=lambda pair: len(pair[0]), reverse=True)  # longest first: no partial leftovers

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def __call__(self, text: str) -> str:
        for fragment, reference in self._pairs:
            if fragment in text:
                text = text.replace(fragment, reference)
        return text
