"""kcm's settings, read from ``KCM_*`` environment variables (documented in .env.example)."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, fields
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
    log_level: str

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
            "log_level": get("log_level", "INFO"),
        }
        return cls(**values)

    @classmethod
    def names(cls) -> list[str]:
        return [f"KCM_{f.name.upper()}" for f in fields(cls)]
