"""The confluent-kafka configuration of a worker, built from its WorkerSpec.

Secrets arrive as references (``${env:NAME}``, ``${file:/path}``) and are resolved here, at start, in the
worker's memory only: a reference that does not resolve is a ``ConsumerConfigError`` (exit 78), and no
resolved value is ever logged or written to Redis.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from schema.settings import Settings
from schema.spec import WorkerSpec

REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")

# librdkafka >= 2.2 waits 1000 ms by default before re-fetching a drained queue, which caps throughput
FETCH_QUEUE_BACKOFF_MS = 10
QUEUED_MIN_MESSAGES = 20_000
# a replica joining or leaving moves only the partitions that change owner; the others keep flowing (eager
# assignment stops every member of the group for each rebalance). Kafka >= 2.4.
ASSIGNMENT_STRATEGY = "cooperative-sticky"


class ConsumerConfigError(ValueError):
    """The consumer's configuration cannot work (unresolvable secret, bad setting): EX_CONFIG."""


def resolve_references(value: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match) -> str:
        kind, name = match.group(1), match.group(2).strip()
        if kind == "env":
            if name not in environ:
                raise ConsumerConfigError(f"secret reference ${{env:{name}}}: environment variable is not set")
            return environ[name]
        try:
            with open(name, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise ConsumerConfigError(f"secret reference ${{file:{name}}}: {exc.strerror or exc}") from None

    return REFERENCE.sub(replace, value)


def resolve_security(security: Mapping[str, object], environ: Mapping[str, str]) -> dict[str, str]:
    resolved = {}
    for key, raw in (security or {}).items():
        if not isinstance(key, str) or not key:
            raise ConsumerConfigError(f"security setting name {key!r} is not a librdkafka property")
        resolved[key] = resolve_references(str(raw), environ) if isinstance(raw, str) else raw
    return resolved


def consumer_config(spec: WorkerSpec, settings: Settings, environ: Mapping[str, str], *, error_cb=None) -> dict:
    if spec.auto_offset_reset not in ("earliest", "latest", "error", "smallest", "largest"):
        raise ConsumerConfigError(f"auto_offset_reset {spec.auto_offset_reset!r} is not earliest, latest or error")
    config = {
        "bootstrap.servers": spec.bootstrap_servers,
        "group.id": spec.group_id,
        "client.id": spec.client_id or f"kcm-{spec.consumer_id}-{spec.replica}",
        "enable.auto.offset.store": False,
        # commits only offsets we stored after every processor flushed the batch: at-least-once
        "enable.auto.commit": True,
        "auto.commit.interval.ms": max(settings.commit_interval_ms, 1),
        # the worker polls while it waits between retries (paused), so only one processor call this long evicts it
        "max.poll.interval.ms": max(settings.max_poll_interval_ms, 1),
        "auto.offset.reset": spec.auto_offset_reset,
        "enable.partition.eof": False,
        "partition.assignment.strategy": ASSIGNMENT_STRATEGY,
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        "queued.min.messages": max(QUEUED_MIN_MESSAGES, settings.batch_size * 2),
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        "socket.connection.setup.timeout.ms": 10_000,
    }
    config.update(resolve_security(spec.security, environ))
    if error_cb is not None:
        config["error_cb"] = error_cb
    return config


def secret_values(security: Mapping[str, object], config: Mapping[str, object]) -> list[str]:
    """The resolved values of the security settings that were given as references (longest first)."""
    values = {str(config[key]) for key, raw in (security or {}).items()
              if isinstance(raw, str) and REFERENCE.search(raw) and config.get(key) not in (None, "")}
    return sorted(values, key=len, reverse=True)


_ECHOED_VALUE = re.compile(r'Invalid value ".*?" for configuration property "([^"]+)"', re.DOTALL)


def refused_config_message(text: str, secrets: list[str]) -> str:
    """librdkafka's refusal of a configuration, safe to log and store: a value it echoes is replaced by the
    name of the property, and no resolved secret survives anywhere in the text."""
    text = _ECHOED_VALUE.sub(r'the value of configuration property "\1" was refused', text)
    for value in secrets:
        text = text.replace(value, "***")
    return text


def is_cooperative(config: Mapping[str, object]) -> bool:
    """Whether rebalances hand out partitions incrementally (``incremental_assign``) or all at once."""
    return "cooperative" in str(config.get("partition.assignment.strategy", ""))


def redacted_config(config: Mapping[str, object]) -> dict:
    """The config for a log line: security values hidden."""
    hidden = ("password", "secret", "key", "token", "jaas")
    return {k: ("***" if any(h in k for h in hidden) else v) for k, v in config.items() if not callable(v)}
