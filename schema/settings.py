"""kcm's settings, read from ``KCM_*`` environment variables (documented in .env.example)."""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _default_sqlite_url() -> str:
    return f"sqlite:///{ROOT / '.local' / 'kcm.sqlite3'}"


class SettingsError(ValueError):
    """A KCM_* variable holds a value of the wrong kind; the message names the variable."""


def _convert(name: str, raw: str, kind):
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"KCM_{name.upper()}={raw!r} is not a valid {kind.__name__}") from None
    if kind in (int, float) and value < 0:
        raise SettingsError(f"KCM_{name.upper()}={raw!r} must not be negative")
    return value


# --- security settings (docs/security.md) ---------------------------------------------------------
AUTH_MODES = ("enabled", "disabled")
MIN_BOOTSTRAP_TOKEN_LENGTH = 32


def _flag(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"KCM_{name.upper()}={raw!r} is not true or false")


def _auth_mode(raw: str) -> str:
    if raw.strip().lower() not in AUTH_MODES:
        raise SettingsError(f"KCM_AUTH={raw!r} must be one of {', '.join(AUTH_MODES)}")
    return raw.strip().lower()


def _bootstrap_token(raw: str) -> str:
    # the message never repeats the value: it is a credential
    if raw and len(raw) < MIN_BOOTSTRAP_TOKEN_LENGTH:
        raise SettingsError(f"KCM_BOOTSTRAP_ADMIN_TOKEN is shorter than {MIN_BOOTSTRAP_TOKEN_LENGTH} characters")
    return raw


def _secret_env_prefix(raw: str) -> str:
    """The prefix ``${env:NAME}`` references must carry; one that kcm's own settings carry would expose them."""
    prefix = raw.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise SettingsError(f"KCM_SECRET_ENV_PREFIX={raw!r} must be letters, digits and '_'")
    exposed = [name for name in Settings.names() if name.startswith(prefix) and name != "KCM_SECRET_ENV_PREFIX"]
    if exposed:
        raise SettingsError(f"KCM_SECRET_ENV_PREFIX={raw!r} would let references read kcm's own {exposed[0]}")
    return prefix


def _absolute_dir(name: str, raw: str) -> str:
    if not raw.startswith("/"):
        raise SettingsError(f"KCM_{name.upper()}={raw!r} must be an absolute path")
    return raw.rstrip("/") or "/"


# --- monitoring settings (docs/monitoring.md) ------------------------------------------------------
LOG_FORMATS = ("text", "json")


def _log_format(raw: str) -> str:
    if raw.strip().lower() not in LOG_FORMATS:
        raise SettingsError(f"KCM_LOG_FORMAT={raw!r} must be one of {', '.join(LOG_FORMATS)}")
    return raw.strip().lower()


def _retry_intervals(raw: str) -> tuple[int, ...]:
    """Seconds between webhook delivery attempts: one retry per entry (rq's Retry intervals)."""
    try:
        intervals = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"KCM_ALERT_RETRY_INTERVALS={raw!r} must be comma-separated whole seconds") from None
    if not intervals or min(intervals) < 1:
        raise SettingsError(f"KCM_ALERT_RETRY_INTERVALS={raw!r} needs at least one interval of 1 s or more")
    return intervals


# --- the consumer group (docs/runtime.md) -----------------------------------------------------------
HEARTBEAT_INTERVAL_MS = 1000  # workers/config.py sends a group heartbeat this often
MIN_SESSION_TIMEOUT_MS = 3 * HEARTBEAT_INTERVAL_MS  # Kafka's rule of thumb: at least three heartbeats per session


def _session_timeout_ms(raw: str) -> int:
    value = _convert("session_timeout_ms", raw, int)
    if value < MIN_SESSION_TIMEOUT_MS:
        raise SettingsError(f"KCM_SESSION_TIMEOUT_MS={raw!r} must be at least {MIN_SESSION_TIMEOUT_MS} "
                            f"(three {HEARTBEAT_INTERVAL_MS} ms heartbeats)")
    return value


# --- several supervisors (docs/runtime.md) ---------------------------------------------------------
MIN_LEASE_TTL = 1.0


def _lease_ttl(raw: str) -> float:
    ttl = _convert("supervisor_lease_ttl", raw, float)
    if ttl < MIN_LEASE_TTL:
        raise SettingsError(f"KCM_SUPERVISOR_LEASE_TTL={raw!r} must be at least {MIN_LEASE_TTL:g} s")
    return ttl


def _labels(raw: str) -> dict[str, str]:
    from schema.placement import LabelError, parse

    try:
        return parse(raw)
    except LabelError as exc:
        raise SettingsError(f"KCM_SUPERVISOR_LABELS: {exc}") from None


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    kafka_bootstrap: str
    reconcile_interval: float
    heartbeat_interval: float
    startsecs: float
    startretries: int
    backoff_max: float
    stopwaitsecs: float
    supervisor_id: str
    file_sink_root: str
    max_content_length: int
    batch_size: int
    batch_timeout: float
    dead_letter_max_bytes: int
    commit_interval_ms: int
    max_poll_interval_ms: int
    session_timeout_ms: int
    log_level: str
    # monitoring (docs/monitoring.md)
    log_format: str
    lag_interval: float
    lag_window: int
    lag_warn_seconds: float
    lag_err_seconds: float
    health_error_rate_warn: float  # a processor's errors per second over the window: WARN above it (0: off)
    worker_metrics: bool  # per-batch processor timing in the worker (the counters are always kept)
    alert_webhook_url: str = field(repr=False)  # may carry a token in its path: never in a repr or a log
    alert_retry_intervals: tuple[int, ...]
    sentry_dsn: str = field(repr=False)  # its key is a credential
    # security (docs/security.md); no defaults here, so a field added after these needs none either
    auth: str
    bootstrap_admin_token: str = field(repr=False)  # a credential: never in a repr or a log
    ui_secret_key: str = field(repr=False)  # signs the dashboard's session cookies (docs/dashboard.md)
    oidc_issuer: str
    oidc_audience: str
    oidc_jwks_url: str
    oidc_roles_claim: str
    metrics_public: bool
    rate_limit_enabled: bool
    rate_limit_read: str
    rate_limit_write: str
    max_consumers: int
    max_replicas: int
    # secret references, librdkafka settings, broker addresses, proxies (docs/security.md)
    secret_env_prefix: str
    secrets_dir: str
    allowed_brokers: str
    trusted_proxies: str
    # several supervisors (docs/runtime.md, "Several supervisors")
    supervisor_lease_ttl: float
    max_workers: int
    supervisor_labels: dict[str, str]

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str, default: str) -> str:
            value = env.get(f"KCM_{name.upper()}", "")
            return value if value.strip() else default

        values = {
            "database_url": get("database_url", _default_sqlite_url()),
            "redis_url": get("redis_url", "redis://127.0.0.1:16379/0"),
            "kafka_bootstrap": get("kafka_bootstrap", "127.0.0.1:19092"),
            "reconcile_interval": _convert("reconcile_interval", get("reconcile_interval", "5"), float),
            "heartbeat_interval": _convert("heartbeat_interval", get("heartbeat_interval", "1"), float),
            "startsecs": _convert("startsecs", get("startsecs", "1"), float),
            "startretries": _convert("startretries", get("startretries", "3"), int),
            "backoff_max": _convert("backoff_max", get("backoff_max", "30"), float),
            "stopwaitsecs": _convert("stopwaitsecs", get("stopwaitsecs", "10"), float),
            "supervisor_id": get("supervisor_id", socket.gethostname()),
            "file_sink_root": get("file_sink_root", str(ROOT / ".local" / "sink")),
            "max_content_length": _convert("max_content_length", get("max_content_length", str(1024 * 1024)), int),
            "batch_size": _convert("batch_size", get("batch_size", "1000"), int),
            "batch_timeout": _convert("batch_timeout", get("batch_timeout", "0.5"), float),
            "dead_letter_max_bytes": _convert("dead_letter_max_bytes", get("dead_letter_max_bytes", str(1024 * 1024)), int),
            "commit_interval_ms": _convert("commit_interval_ms", get("commit_interval_ms", "1000"), int),
            "max_poll_interval_ms": _convert("max_poll_interval_ms", get("max_poll_interval_ms", "300000"), int),
            "session_timeout_ms": _session_timeout_ms(get("session_timeout_ms", "10000")),
            "log_level": get("log_level", "INFO"),
            # monitoring (docs/monitoring.md)
            "log_format": _log_format(get("log_format", "text")),
            "lag_interval": _convert("lag_interval", get("lag_interval", "5"), float),
            "lag_window": max(_convert("lag_window", get("lag_window", "10"), int), 2),
            "lag_warn_seconds": _convert("lag_warn_seconds", get("lag_warn_seconds", "0"), float),
            "lag_err_seconds": _convert("lag_err_seconds", get("lag_err_seconds", "0"), float),
            "health_error_rate_warn": _convert("health_error_rate_warn", get("health_error_rate_warn", "0.1"), float),
            "worker_metrics": _flag("worker_metrics", get("worker_metrics", "true")),
            "alert_webhook_url": get("alert_webhook_url", "").strip(),
            "alert_retry_intervals": _retry_intervals(get("alert_retry_intervals", "5,10,30,60,120,300")),
            "sentry_dsn": get("sentry_dsn", "").strip(),
            # security (docs/security.md)
            "auth": _auth_mode(get("auth", "enabled")),
            "bootstrap_admin_token": _bootstrap_token(env.get("KCM_BOOTSTRAP_ADMIN_TOKEN", "").strip()),
            "ui_secret_key": env.get("KCM_UI_SECRET_KEY", "").strip(),
            "oidc_issuer": get("oidc_issuer", ""),
            "oidc_audience": get("oidc_audience", ""),
            "oidc_jwks_url": get("oidc_jwks_url", ""),
            "oidc_roles_claim": get("oidc_roles_claim", "roles"),
            "metrics_public": _flag("metrics_public", get("metrics_public", "false")),
            "rate_limit_enabled": _flag("rate_limit_enabled", get("rate_limit_enabled", "true")),
            "rate_limit_read": get("rate_limit_read", "600/minute"),
            "rate_limit_write": get("rate_limit_write", "120/minute"),
            "max_consumers": _convert("max_consumers", get("max_consumers", "1000"), int),
            "max_replicas": _convert("max_replicas", get("max_replicas", "64"), int),
            "secret_env_prefix": _secret_env_prefix(get("secret_env_prefix", "KCM_SECRET_")),
            "secrets_dir": _absolute_dir("secrets_dir", get("secrets_dir", "/run/secrets")),
            "allowed_brokers": get("allowed_brokers", ""),
            "trusted_proxies": get("trusted_proxies", ""),
            # several supervisors (docs/runtime.md, "Several supervisors")
            "supervisor_lease_ttl": _lease_ttl(get("supervisor_lease_ttl", "10")),
            "max_workers": _convert("max_workers", get("max_workers", "0"), int),
            "supervisor_labels": _labels(get("supervisor_labels", "")),
        }
        if values["max_poll_interval_ms"] < values["session_timeout_ms"]:  # librdkafka refuses the consumer
            raise SettingsError(f"KCM_MAX_POLL_INTERVAL_MS={values['max_poll_interval_ms']} must be at least "
                                f"KCM_SESSION_TIMEOUT_MS ({values['session_timeout_ms']})")
        return cls(**values)

    @classmethod
    def names(cls) -> list[str]:
        return [f"KCM_{f.name.upper()}" for f in fields(cls)]
