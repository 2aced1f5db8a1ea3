"""Logging for every kcm process, set up in one place: ``setup_logging("supervisor", settings)``.

``KCM_LOG_FORMAT=json`` (the Procfile's default) writes one JSON object per line with ``ts`` (ISO-8601 UTC),
``level``, ``logger``, ``event`` (the message), ``process`` and ``pid``, plus ``consumer_id``, ``replica``,
``generation`` and ``request_id`` where they apply; ``text`` (the default in a terminal) writes the classic
line. Callers never log payloads or secrets; the formatter adds nothing but the fields above and the
``extra=`` a call passes. docs/monitoring.md lists the fields.

With ``KCM_SENTRY_DSN`` set and sentry-sdk installed (the ``sentry`` extra), the same setup sends unexpected
exceptions to Sentry: unhandled ones, and every record logged with an exception at ERROR or above (the API's
500 handler, the supervisor's and the rq jobs'), without PII, local variables, request bodies or secret values.
"""
from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

# the request being served, set by the API for each request (a context variable: threads and greenlets apart)
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("kcm_request_id", default=None)
# or a function that finds it (the API's: Flask's request context), so no hook order matters
_request_id_provider: Callable[[], str | None] | None = None


def set_request_id_provider(provider: Callable[[], str | None] | None) -> None:
    global _request_id_provider
    _request_id_provider = provider


def current_request_id() -> str | None:
    value = request_id.get()
    if value is None and _request_id_provider is not None:
        try:
            value = _request_id_provider()
        except Exception:  # noqa: BLE001 (a log line must never fail for its context)
            value = None
    return value

CONTEXT_FIELDS = ("consumer_id", "replica", "generation", "request_id")
JSON_RENAMES = {"asctime": "ts", "levelname": "level", "name": "logger", "message": "event"}
# gunicorn's access-log atoms worth a field each (never the query string, a header or the body)
ACCESS_ATOMS = {"h": "remote", "m": "method", "U": "path", "s": "status", "B": "bytes", "L": "duration_seconds",
                "{x-request-id}o": "request_id"}
_installed_handler: logging.Handler | None = None


class ContextFilter(logging.Filter):
    """Adds the fixed fields of this process (a worker's consumer, replica, generation) and the current
    request id to each record that does not carry them already."""

    def __init__(self, process: str, static: dict | None = None):
        super().__init__()
        self.process_name = process
        self.static = {k: v for k, v in (static or {}).items() if v is not None}

    def filter(self, record: logging.LogRecord) -> bool:
        record.kcm_process = self.process_name
        for name, value in self.static.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        current = current_request_id()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            atoms = record.args
            for atom, field in ACCESS_ATOMS.items():
                value = atoms.get(atom)
                if value not in (None, "-") and not hasattr(record, field):
                    setattr(record, field, value)
        return True


def _json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    class KcmJsonFormatter(JsonFormatter):
        def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
            return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")

        def add_fields(self, log_record, record, message_dict):
            super().add_fields(log_record, record, message_dict)
            log_record["process"] = getattr(record, "kcm_process", None)
            log_record["pid"] = record.process
            for name in CONTEXT_FIELDS:
                if name not in log_record and getattr(record, name, None) is not None:
                    log_record[name] = getattr(record, name)

    return KcmJsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields=JSON_RENAMES,
                            reserved_attrs=[*_RESERVED, "kcm_process"])


_RESERVED = [
    "args", "asctime", "created", "exc_info", "exc_text", "filename", "funcName", "levelname", "levelno", "lineno",
    "module", "msecs", "message", "msg", "name", "pathname", "process", "processName", "relativeCreated",
    "stack_info", "thread", "threadName", "taskName",
]


class _TextFormatter(logging.Formatter):
    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS
                           if getattr(record, name, None) is not None)
        record.kcm_context = f" {context}" if context else ""
        return super().format(record)


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return _json_formatter()
    return _TextFormatter("%(asctime)s %(levelname)s %(kcm_process)s pid=%(process)d%(kcm_context)s %(message)s")


def setup_logging(process: str, *, level: str = "INFO", fmt: str = "text", static: dict | None = None,
                  stream=None) -> logging.Handler:
    """Send every logger's records (kcm's, gunicorn's, rq's, the libraries') to one stderr handler in ``fmt``.
    Idempotent: a second call replaces the handler this module installed."""
    global _installed_handler
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(ContextFilter(process, static))
    root = logging.getLogger()
    if _installed_handler is not None:
        root.removeHandler(_installed_handler)
    for existing in list(root.handlers):  # basicConfig's: one line per record, ours (a test's capture stays)
        if type(existing) is logging.StreamHandler:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    _installed_handler = handler
    setup_error_reporting(process)
    return handler


# --- Sentry (optional): KCM_SENTRY_DSN and the `sentry` extra ------------------------------------------------
SENTRY_DSN_ENV = "KCM_SENTRY_DSN"
# variables whose values are credentials: scrubbed from every event, wherever they appear
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|PRIVATE|_KEY$|DSN|WEBHOOK", re.IGNORECASE)
SAFE_HEADERS = frozenset({"user-agent", "content-type", "content-length", "accept", "x-request-id", "host"})
FILTERED = "[Filtered]"
MIN_SECRET_LENGTH = 6  # shorter values ("true", "json") would blank out ordinary words
_error_reporting: str | None = None  # the process Sentry was set up for


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """The values an event must never contain: credential-like variables, secret references' targets (the
    KCM_SECRET_ENV_PREFIX variables), and the passwords and paths of URLs held in such variables or in KCM_*."""
    prefix = environ.get("KCM_SECRET_ENV_PREFIX", "").strip() or "KCM_SECRET_"
    found = set()
    for name, value in environ.items():
        value = value.strip()
        if not value:
            continue
        if name.startswith(prefix) or SECRET_NAME.search(name):
            found.add(value)
        if name.startswith("KCM_") and "://" in value:
            try:
                parts = urlsplit(value)
            except ValueError:
                continue
            found.update(v for v in (parts.password, parts.path if SECRET_NAME.search(name) else None) if v)
    return sorted((v for v in found if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def _scrubbed(value, secrets: list[str]):
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, FILTERED)
        return value
    if isinstance(value, dict):
        return {k: _scrubbed(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v, secrets) for v in value]
    return value


def _before_send(secrets: list[str]):
    def before_send(event, hint):
        record = (hint or {}).get("log_record")
        if record is not None and not record.exc_info:
            return None  # an ERROR line without an exception is a known condition, not a crash
        request = event.get("request")
        if isinstance(request, dict):  # only harmless headers; no cookies, body or environment
            request["headers"] = {k: v for k, v in (request.get("headers") or {}).items()
                                  if k.lower() in SAFE_HEADERS}
            for name in ("cookies", "data", "env"):
                request.pop(name, None)
        return _scrubbed(event, secrets)
    return before_send


def setup_error_reporting(process: str, environ: Mapping[str, str] | None = None) -> bool:
    """Initialise Sentry once per process when ``KCM_SENTRY_DSN`` is set; True when events will be sent.
    Without sentry-sdk installed it says so once and the process runs as usual."""
    global _error_reporting
    env = os.environ if environ is None else environ
    dsn = env.get(SENTRY_DSN_ENV, "").strip()
    if not dsn:
        return False
    if _error_reporting == process:
        return True
    try:
        import sentry_sdk
        from sentry_sdk.integrations.logging import LoggingIntegration
        from sentry_sdk.integrations.stdlib import StdlibIntegration
    except ImportError:
        logging.getLogger("kcm").warning("SentryUnavailable: %s is set but sentry-sdk is not installed "
                                         "(pip install 'kcm[sentry]')", SENTRY_DSN_ENV)
        return False
    secrets = secret_values(env)
    try:
        # no PII: send_default_pii keeps its default (False; passing it is deprecated from sentry-sdk 2.7x)
        sentry_sdk.init(
            dsn=dsn, include_local_variables=False, max_request_body_size="never",
            traces_sample_rate=None, before_send=_before_send(secrets),
            before_breadcrumb=lambda crumb, _hint: _scrubbed(crumb, secrets),
            integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
            # its HTTP breadcrumbs would carry URLs (the alert webhook's may hold a token in its path)
            disabled_integrations=[StdlibIntegration()])
    except Exception as exc:  # noqa: BLE001 (a malformed DSN must not stop the process; its text is a secret)
        logging.getLogger("kcm").warning("SentryUnavailable: %s cannot be used (%s)", SENTRY_DSN_ENV,
                                         type(exc).__name__)
        return False
    sentry_sdk.set_tag("kcm_process", process)
    _error_reporting = process
    return True


def setup_from_env(process: str, *, static: dict | None = None, level: str | None = None) -> logging.Handler:
    """For processes started before settings are parsed (rq's worker, gunicorn's config file, a worker whose
    spec is bad): the same variables, read leniently (a bad value falls back to the default; the process's
    own settings check reports it)."""
    fmt = os.environ.get("KCM_LOG_FORMAT", "text").strip().lower()
    level = level or os.environ.get("KCM_LOG_LEVEL", "INFO").strip() or "INFO"
    return setup_logging(process, level=level, fmt=fmt if fmt in ("text", "json") else "text", static=static)


def gunicorn_logconfig(fmt: str | None = None) -> dict:
    """``logconfig_dict`` for deploy/gunicorn.conf.py: gunicorn's error and access logs through kcm's handler."""
    fmt = fmt or os.environ.get("KCM_LOG_FORMAT", "text").strip().lower()
    setup_error_reporting("web")  # in the master; sentry-sdk restarts its sender thread in each forked worker
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"kcm": {"()": ContextFilter, "process": "web"}},
        "formatters": {"kcm": {"()": formatter, "fmt": fmt if fmt in ("text", "json") else "text"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "kcm", "filters": ["kcm"]}},
        "root": {"level": os.environ.get("KCM_LOG_LEVEL", "INFO").strip().upper() or "INFO",
                 "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        },
    }
