"""The confluent-kafka configuration of a worker, built from its WorkerSpec.

The ``security`` settings are checked again here against the allowlist (``schema.kafka_settings``) and the
cluster against the broker address policy (``schema.brokers``): a row written before those rules, or by hand,
is a ``ConsumerConfigError`` (exit 78, FATAL). Secret references (``schema.secrets``) are resolved here, at
start, in the worker's memory only; every resolved value goes into a ``Redactor`` so no librdkafka message that
echoes one reaches a log line or Redis.
"""
from __future__ import annotations

from collections.abc import Mapping

from schema import kafka_settings, secrets
from schema.brokers import BrokerPolicy, host_of
from schema.secrets import Redactor, SecretPolicy
from schema.settings import HEARTBEAT_INTERVAL_MS, Settings
from schema.spec import WorkerSpec

# librdkafka >= 2.2 waits 1000 ms by default before re-fetching a drained queue, which caps throughput
FETCH_QUEUE_BACKOFF_MS = 10
QUEUED_MIN_MESSAGES = 20_000
# a replica joining or leaving moves only the partitions that change owner; the others keep flowing (eager
# assignment stops every member of the group for each rebalance). Kafka >= 2.4.
ASSIGNMENT_STRATEGY = "cooperative-sticky"


class ConsumerConfigError(ValueError):
    """The consumer's configuration cannot work (unresolvable secret, bad setting): EX_CONFIG."""


def check_brokers(servers: str, policy: BrokerPolicy, *, what: str = "bootstrap_servers") -> None:
    """The broker address policy, on the names as given and on what they resolve to."""
    listed = [s for s in servers.split(",") if s.strip()]
    refused = policy.check_servers(listed) or policy.check_resolved(listed)
    if refused:
        index, message = next(iter(refused.items()))
        host = host_of(listed[index])
        raise ConsumerConfigError(f"BrokerNotAllowed: {what} entry {index} ({host}): {message}")


def resolve_security(security: Mapping[str, object] | None, settings: Settings, environ: Mapping[str, str],
                     redactor: Redactor | None = None) -> dict:
    try:
        return kafka_settings.resolve(security, SecretPolicy.of(settings), BrokerPolicy.of(settings), environ,
                                      redactor)
    except kafka_settings.SettingRefused as exc:
        raise ConsumerConfigError(f"security settings refused: {exc}") from None
    except secrets.SecretError as exc:
        raise ConsumerConfigError(str(exc)) from None
    except ValueError as exc:  # KCM_ALLOWED_BROKERS itself is malformed
        raise ConsumerConfigError(str(exc)) from None


def consumer_config(spec: WorkerSpec, settings: Settings, environ: Mapping[str, str], *, error_cb=None,
                    redactor: Redactor | None = None) -> dict:
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
        # a killed replica's partitions move after this long (KCM_SESSION_TIMEOUT_MS)
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
        "socket.connection.setup.timeout.ms": 10_000,
    }
    try:
        brokers = BrokerPolicy.of(settings)
    except ValueError as exc:
        raise ConsumerConfigError(str(exc)) from None
    check_brokers(spec.bootstrap_servers, brokers)
    config.update(resolve_security(spec.security, settings, environ, redactor))
    if error_cb is not None:
        config["error_cb"] = error_cb
    return config


def is_cooperative(config: Mapping[str, object]) -> bool:
    """Whether rebalances hand out partitions incrementally (``incremental_assign``) or all at once."""
    return "cooperative" in str(config.get("partition.assignment.strategy", ""))


def redacted_config(config: Mapping[str, object]) -> dict:
    """The config for a log line: security values hidden."""
    hidden = ("password", "secret", "key", "token", "jaas")
    return {k: ("***" if any(h in k for h in hidden) else v) for k, v in config.items() if not callable(v)}
