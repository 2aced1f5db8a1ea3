"""``http_sink``: POSTs each batch as a JSON array (or each message alone with ``per_message``) to a URL.

Body: one envelope per message, ``{"topic", "partition", "offset", "timestamp" (ms or null), "key" (text, or
base64 with "key_encoding": "base64"), "headers" ([{"key", "value"}] or null), "value", "value_encoding"}``.
``value_format: auto`` (default) sends a value that parses as JSON as that JSON (``value_encoding: "json"``),
else UTF-8 text (``"text"``), else base64 (``"base64"``); ``json`` makes a value that does not parse a poison
message; ``text`` and ``base64`` never parse. A null value (a tombstone) is ``"value": null`` without encoding.

Answers: 2xx accepted; 408, 429 and 5xx, a timeout or a refused connection are retried by the pipeline (the
worker keeps its partitions paused and polling) and a ``Retry-After`` (seconds or an HTTP date, capped at
``retry_after_max``) is waited out before the next attempt, interruptibly (``interrupt()``), and carried as
``RetriableError.retry_after``; 401/403/404/405/407/410 and a redirect (never followed) are a FatalError (the
target or its credentials are wrong: every message would fail); any other 4xx is a poison message, so the
pipeline bisects the batch until the refused message stands alone and dead-letters or skips exactly it. With
``per_message`` the messages a failed attempt already delivered are remembered and not sent again.

Security: the URL passes the address policy of ``schema.brokers`` (no link-local or cloud metadata address; only
``KCM_ALLOWED_BROKERS`` hosts when set) at the API, and again at open with the DNS answer; redirects and
environment proxies are not followed. URL and header values may be secret references (``schema.secrets``);
no header value, no query string and no third-party text reaches an error, a log line or a dead letter.
"""
from __future__ import annotations

import base64
import collections
import json
import logging
import re
import threading
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

import requests
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from marshmallow.experimental.context import Context

from processors.base import BaseProcessor, FatalError, PoisonMessageError, RetriableError
from processors.checks import Check
from processors.encoding import headers_json, text_or_b64
from schema import secrets
from schema.brokers import BrokerPolicy
from schema.secrets import Redactor, SecretPolicy

log = logging.getLogger(__name__)

VALUE_FORMATS = ("auto", "json", "text", "base64")
RETRIED_STATUSES = frozenset({408, 429})
FATAL_STATUSES = frozenset({401, 403, 404, 405, 407, 410})  # the target or its credentials, not the data
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 field name
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection"})
SENT_MEMORY = 100_000  # per_message: coordinates remembered as delivered, across the attempts of a batch
_BODY_SNIPPET = 200


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` asks for (delta-seconds or an HTTP date), or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def status_error(status: int) -> type[Exception] | None:
    """The error class an HTTP status means, or None when the request was accepted."""
    if 200 <= status < 300:
        return None
    if status in RETRIED_STATUSES or status >= 500:
        return RetriableError
    if status in FATAL_STATUSES or 300 <= status < 400 or status < 200:
        return FatalError
    return PoisonMessageError


class SinkRetriableError(RetriableError):
    """Retriable, with the delay the target asked for (seconds, or None): a pipeline may honour it."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _policies() -> tuple[SecretPolicy | None, BrokerPolicy]:
    settings = Context.get({}).get("settings")
    if settings is None:
        return None, BrokerPolicy()
    try:
        return SecretPolicy.of(settings), BrokerPolicy.of(settings)
    except ValueError as exc:  # KCM_ALLOWED_BROKERS itself is malformed
        raise ValidationError(str(exc)) from None


def _check_url(value: str) -> str | None:
    secret_policy, brokers = _policies()
    if not secrets.looks_like_reference(value):
        return brokers.check_url(value)
    problem = secrets.check(value, secret_policy)
    if problem is not None or secret_policy is None:
        return problem
    try:  # the API checks what the reference holds only when it can resolve it; open() always does
        return brokers.check_url(secrets.resolve(value, secret_policy))
    except secrets.SecretError:
        return None


def _validate_url(value: str) -> None:
    problem = _check_url(value)
    if problem is not None:
        raise ValidationError(problem)


def _validate_headers(value: dict) -> None:
    secret_policy, _ = _policies()
    errors = {}
    for name, header in value.items():
        if not _TOKEN.match(name):
            errors[name] = ["Not a valid header name (letters, digits and !#$%&'*+.^_`|~-)."]
        elif name.lower() in RESERVED_HEADERS:
            errors[name] = ["Set by kcm itself; it cannot be configured."]
        elif not isinstance(header, str) or any(c in header for c in "\r\n\x00"):
            errors[name] = ["Must be a string without line breaks."]
        elif secrets.looks_like_reference(header):
            problem = secrets.check(header, secret_policy)
            if problem is not None:
                errors[name] = [problem]
    if errors:
        raise ValidationError(errors)


class HttpSinkConfig(Schema):
    class Meta:
        unknown = RAISE

    url = fields.String(required=True, validate=_validate_url, metadata={
        "description": "http(s) URL, or a ${env:KCM_SECRET_...} / ${file:...} reference to one; must pass the "
                       "address policy (no link-local or metadata address; KCM_ALLOWED_BROKERS when set)"})
    method = fields.String(load_default="POST", validate=validate.OneOf(["POST", "PUT"]))
    per_message = fields.Boolean(load_default=False, metadata={
        "description": "one request per message (a JSON object) instead of one per batch (a JSON array)"})
    headers = fields.Dict(keys=fields.String(), values=fields.Raw(), load_default=dict, validate=_validate_headers,
                          metadata={"description": "extra request headers; a value may be a secret reference"})
    value_format = fields.String(load_default="auto", validate=validate.OneOf(VALUE_FORMATS), metadata={
        "description": "auto: JSON when the value parses, else text, else base64; json: must parse (else a "
                       "poison message); text: UTF-8 text, else base64; base64: always base64"})
    connect_timeout = fields.Float(load_default=5.0, validate=validate.Range(min=0.1, max=120))
    read_timeout = fields.Float(load_default=30.0, validate=validate.Range(min=0.1, max=600), metadata={
        "description": "seconds to wait for the answer; a timeout is retried (the target may have the batch: "
                       "at-least-once)"})
    retry_after_max = fields.Float(load_default=30.0, validate=validate.Range(min=0, max=120), metadata={
        "description": "the longest Retry-After waited out before the next attempt (the worker does not poll "
                       "meanwhile); longer hints are cut to this"})
    check_path = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(
        r"^/[^\s?#]*$", error="An absolute path ('/health'), without query or fragment."), metadata={
        "description": "what POST /consumers/validate/ sends HEAD to on the URL's host; default: the URL"})


def envelopes(batch, value_format: str) -> list[dict]:
    """The body's objects, one per message, in order; PoisonMessageError for a value ``json`` cannot parse."""
    out = []
    for m in batch:
        kind, timestamp = m.timestamp()
        entry = {"topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
                 "timestamp": timestamp if kind else None}
        entry.update(text_or_b64("key", m.key()))
        entry["headers"] = headers_json(m.headers())
        entry.update(_value(m, value_format))
        out.append(entry)
    return out


def _value(m, value_format: str) -> dict:
    value = m.value()
    if value is None:
        return {"value": None}
    if value_format in ("auto", "json"):
        try:
            return {"value": json.loads(value), "value_encoding": "json"}
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            if value_format == "json":
                raise PoisonMessageError(f"http_sink: {m.topic()}/{m.partition()}@{m.offset()}: the value is "
                                         "not JSON (value_format: json)") from None
    if value_format != "base64":
        try:
            return {"value": value.decode("utf-8"), "value_encoding": "text"}
        except UnicodeDecodeError:
            pass
    return {"value": base64.b64encode(value).decode("ascii"), "value_encoding": "base64"}


class HttpSinkProcessor(BaseProcessor):
    ConfigSchema = HttpSinkConfig
    description = "POSTs each batch (a JSON array) or each message to an HTTP endpoint; 4xx dead-lettered"

    _session: requests.Session | None = None

    @classmethod
    def check(cls, config: dict, context) -> list[Check]:
        """The URL answers a HEAD (to ``check_path`` when set): any answer but 5xx or refused credentials."""
        probe = cls(config, context=context)
        name = "http_sink target"
        try:
            probe._prepare()
        except FatalError as exc:
            return [Check(name, False, str(exc))]
        parts = urlsplit(probe._url)
        target = urlunsplit((parts.scheme, parts.netloc, config["check_path"], "", "")) if config["check_path"] \
            else probe._url
        try:
            answer = probe._session.head(target, headers=probe._headers, allow_redirects=False,
                                         timeout=(config["connect_timeout"], min(config["read_timeout"], 5.0)))
        except requests.RequestException as exc:
            return [Check(name, False, f"{probe._shown} did not answer: {type(exc).__name__}.")]
        finally:
            probe.close()
        ok = answer.status_code < 500 and answer.status_code not in (401, 403, 407)
        return [Check(name, ok, f"{probe._shown} answered HEAD with {answer.status_code} {answer.reason}.")]

    def open(self) -> None:
        self._prepare()
        self._pending: list[tuple[list, bytes]] = []
        self._sent: collections.OrderedDict = collections.OrderedDict()
        self._not_before = 0.0
        self._interrupted = threading.Event()

    def _prepare(self) -> None:
        """Resolve the references, apply the address policy to the URL and its DNS answer, build the Session."""
        self._redact = Redactor()
        settings = self.context.settings
        secret_policy = SecretPolicy.of(settings)
        try:
            brokers = BrokerPolicy.of(settings)
        except ValueError as exc:
            raise FatalError(f"http_sink: {exc}") from None
        url = self.config["url"]
        is_reference = secrets.looks_like_reference(url)
        try:
            self._url = secrets.resolve(url, secret_policy) if is_reference else url
            self._headers = {name: secrets.resolve_if_reference(value, secret_policy)
                             for name, value in self.config["headers"].items()}
        except secrets.SecretError as exc:
            raise FatalError(f"http_sink: {exc}") from None
        parts = urlsplit(self._url)
        self._shown = url if is_reference else urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        for name, value in self._headers.items():  # a plain value is hidden too: a receiver may echo it
            configured = self.config["headers"][name]
            self._redact.add(configured if secrets.looks_like_reference(configured) else f"<header {name}>", value)
        if is_reference:
            self._redact.add(url, self._url)
        problem = brokers.check_url(self._url)
        if problem is None:
            host = parts.hostname
            port = parts.port or (443 if parts.scheme == "https" else 80)
            refused = brokers.check_resolved([f"[{host}]:{port}" if ":" in host else f"{host}:{port}"])
            problem = next(iter(refused.values()), None)
        if problem is not None:
            raise FatalError(f"BrokerNotAllowed: http_sink url {self._shown}: {problem}")
        session = requests.Session()
        session.trust_env = False  # no proxy, no .netrc from the environment: the policy checked this URL
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session

    def interrupt(self) -> None:
        """Stop waiting out a Retry-After (warm shutdown): the attempt fails, its offsets stay."""
        self._interrupted.set()

    # ------------------------------------------------------------------ batches
    def process(self, batch) -> None:
        bodies = envelopes(batch, self.config["value_format"])
        if self.config["per_message"]:
            self._pending.extend((m, body) for m, body in zip(batch, bodies, strict=True))
        else:
            self._pending.append((None, json.dumps(bodies, separators=(",", ":"), ensure_ascii=False).encode()))

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for message, body in pending:
            if message is None:
                self._send(body, what="a batch")
                continue
            where = (message.topic(), message.partition(), message.offset())
            if where in self._sent:  # delivered by an earlier attempt of this batch
                continue
            self._send(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
                       what=f"{where[0]}/{where[1]}@{where[2]}")
            self._sent[where] = None
            if len(self._sent) > SENT_MEMORY:
                self._sent.popitem(last=False)

    def _send(self, body: bytes, *, what: str) -> None:
        self._wait_retry_after()
        headers = {**self._headers, "Content-Type": "application/json"}
        timeout = (self.config["connect_timeout"], self.config["read_timeout"])
        try:
            answer = self._session.request(self.config["method"], self._url, data=body, headers=headers,
                                           timeout=timeout, allow_redirects=False)
        except requests.exceptions.SSLError:
            raise FatalError(f"http_sink: TLS with {self._shown} failed (certificate or protocol)") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader) as exc:
            raise FatalError(f"http_sink: {type(exc).__name__} for {self._shown}") from None
        except requests.RequestException as exc:  # connection refused or reset, timeouts, a broken answer
            raise SinkRetriableError(f"http_sink: {type(exc).__name__} sending {what} to {self._shown}") from None
        error = status_error(answer.status_code)
        if error is None:
            return
        text = f"http_sink: {self._shown} answered {answer.status_code} {answer.reason} to {what}{self._snippet(answer)}"
        if error is RetriableError:
            delay = parse_retry_after(answer.headers.get("Retry-After"))
            if delay is not None:
                delay = min(delay, self.config["retry_after_max"])
                self._not_before = time.monotonic() + delay
                text += f" (Retry-After: waiting {delay:g} s)"
            raise SinkRetriableError(text, delay)
        raise error(text)

    def _snippet(self, answer) -> str:
        """The start of the answer's body, for the dead letter's reason, without secrets or control characters."""
        try:
            raw = answer.content[:_BODY_SNIPPET].decode("utf-8", errors="replace")
        except requests.RequestException:
            return ""
        text = " ".join(self._redact(raw).split())
        return f": {text}" if text else ""

    def _wait_retry_after(self) -> None:
        remaining = self._not_before - time.monotonic()
        if remaining > 0 and self._interrupted.wait(remaining):
            raise SinkRetriableError(f"http_sink: stopped while waiting out a Retry-After from {self._shown}")

    def discard(self) -> None:
        self._pending = []

    def close(self) -> None:
        if self._session is not None:
            try:
                self._session.close()
            finally:
                self._session = None
