"""Kafka's offsets of consumer groups, read and changed through an AdminClient: the partitions of a topic, the
committed offsets, the watermarks, the offsets for a timestamp (Kafka's ``offsets_for_times``), and the changes
the offsets API makes (alter a group's committed offsets, delete a group). One module for the lag monitor
(supervisor/lag/kafka.py) and the offsets API (api/services/offsets.py).

A failure names the Kafka error code only: librdkafka's text can echo broker addresses and settings.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_INVALID,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

REQUEST_TIMEOUT = 10.0
CONNECT_TIMEOUT_MS = 5000
# a group that never committed starts here, by auto_offset_reset (anything else: at the end)
FROM_START = frozenset({"earliest", "smallest", "beginning"})
# the codes with which Kafka refuses to change the offsets of a group that has live members
GROUP_ACTIVE_CODES = frozenset({
    KafkaError.UNKNOWN_MEMBER_ID, KafkaError.NON_EMPTY_GROUP, KafkaError.GROUP_SUBSCRIBED_TO_TOPIC,
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION, KafkaError.FENCED_INSTANCE_ID,
})


class KafkaUnavailable(Exception):
    """The cluster could not be read or changed; the message names the Kafka error code only."""


class GroupActive(Exception):
    """Kafka refused to change a group's offsets because the group has live members."""

    def __init__(self, group: str, code: str):
        super().__init__(f"Kafka refuses to change the offsets of group {group!r}: it has active members ({code}); "
                         "stop every consumer of the group first, kcm's and any other")
        self.code = code


@dataclass(frozen=True)
class Watermarks:
    low: int
    high: int


def error_code(exc: BaseException) -> str:
    """A Kafka error by its code name (``UNKNOWN_MEMBER_ID``), or the exception's type."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    if isinstance(error, KafkaError):
        return error.name()
    return type(exc).__name__


def _kafka_code(exc: BaseException) -> int | None:
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    return error.code() if isinstance(error, KafkaError) else None


def admin_client(config: Mapping) -> AdminClient:
    """An AdminClient that gives up connecting within seconds (a request must not hang on a dead broker)."""
    return AdminClient({**config, "socket.connection.setup.timeout.ms": CONNECT_TIMEOUT_MS})


def client_config(bootstrap_servers: str, security: Mapping | None, settings, environ=None, *,
                  check_dns: bool = False) -> dict:
    """librdkafka settings for a consumer's cluster, through the rules a worker applies at start (the broker
    address policy, the security allowlist, confined secret references; ``check_dns``: the policy applied to
    the hosts' DNS answers too, as the worker does). Raises ``KafkaUnavailable`` naming the rule, never a value."""
    from schema import kafka_settings
    from schema.brokers import BrokerPolicy
    from schema.secrets import SecretPolicy

    try:
        brokers = BrokerPolicy.of(settings)
        servers = [s for s in bootstrap_servers.split(",") if s.strip()]
        if brokers.check_servers(servers) or (check_dns and brokers.check_resolved(servers)):
            raise KafkaUnavailable("the brokers are not allowed by KCM_ALLOWED_BROKERS")
        resolved = kafka_settings.resolve(dict(security or {}) or None, SecretPolicy.of(settings), brokers, environ)
    except KafkaUnavailable:
        raise
    except ValueError as exc:  # SettingRefused, SecretError, a malformed policy: all ValueErrors
        raise KafkaUnavailable(f"the security settings cannot be used ({type(exc).__name__})") from None
    return {"bootstrap.servers": bootstrap_servers, **(resolved or {})}


def start_offset(committed: int | None, low: int, high: int, from_beginning: bool) -> int:
    """Where a group reads next: its commit, or where auto_offset_reset says when it never committed; an offset
    retention already deleted is read from the low watermark."""
    start = committed if committed is not None else (low if from_beginning else high)
    return min(max(start, low), high)


def topic_partitions(admin: AdminClient, topics: Iterable[str]) -> dict[str, list[int]]:
    """topic -> its partitions, sorted; a topic that does not exist is absent."""
    try:
        metadata = admin.list_topics(timeout=REQUEST_TIMEOUT)
    except KafkaException as exc:
        raise KafkaUnavailable(f"Kafka cluster unreachable ({error_code(exc)})") from None
    return {t: sorted(metadata.topics[t].partitions) for t in topics
            if t in metadata.topics and metadata.topics[t].error is None}


def committed_offsets(admin: AdminClient, requests: Mapping[str, list[TopicPartition]]
                      ) -> tuple[dict[tuple[str, str, int], int | None], dict[str, str]]:
    """``requests``: group -> its partitions. ``(group, topic, partition) -> offset`` (None: never committed),
    and group -> why its offsets could not be read. One request per group."""
    futures = {}
    for group, wanted in requests.items():
        if wanted:
            request = [ConsumerGroupTopicPartitions(group, list(wanted))]
            futures[group] = next(iter(admin.list_consumer_group_offsets(
                request, request_timeout=REQUEST_TIMEOUT).values()))
    committed: dict[tuple[str, str, int], int | None] = {}
    errors: dict[str, str] = {}
    for group, future in futures.items():
        try:
            result = future.result(REQUEST_TIMEOUT + 5)
        except KafkaException as exc:
            errors[group] = f"committed offsets unreadable ({error_code(exc)})"
            continue
        for tp in result.topic_partitions:
            committed[(group, tp.topic, tp.partition)] = None if tp.offset == OFFSET_INVALID or tp.offset < 0 \
                else tp.offset
    return committed, errors


def group_topics(admin: AdminClient, group: str) -> set[str]:
    """Every topic the group has committed offsets on (an unknown group: none)."""
    request = [ConsumerGroupTopicPartitions(group)]
    future = next(iter(admin.list_consumer_group_offsets(request, request_timeout=REQUEST_TIMEOUT).values()))
    try:
        result = future.result(REQUEST_TIMEOUT + 5)
    except KafkaException as exc:
        if _kafka_code(exc) == KafkaError.GROUP_ID_NOT_FOUND:
            return set()
        raise KafkaUnavailable(f"committed offsets unreadable ({error_code(exc)})") from None
    return {tp.topic for tp in result.topic_partitions if tp.offset >= 0}


def _list_offsets(admin: AdminClient, tps: list[TopicPartition], spec: OffsetSpec, what: str
                  ) -> dict[tuple[str, int], int]:
    futures = admin.list_offsets({tp: spec for tp in tps}, request_timeout=REQUEST_TIMEOUT)
    values = {}
    for tp, future in futures.items():
        try:
            values[(tp.topic, tp.partition)] = future.result(REQUEST_TIMEOUT + 5).offset
        except KafkaException as exc:
            raise KafkaUnavailable(f"{what} unreadable ({error_code(exc)})") from None
    return values


def watermarks(admin: AdminClient, tps: list[TopicPartition]) -> dict[tuple[str, int], Watermarks]:
    """Low and high watermark of every partition: one ``list_offsets`` for each."""
    if not tps:
        return {}
    high = _list_offsets(admin, tps, OffsetSpec.latest(), "watermarks")
    low = _list_offsets(admin, tps, OffsetSpec.earliest(), "watermarks")
    return {key: Watermarks(low=low[key], high=high[key]) for key in high}


def offsets_for_time(admin: AdminClient, tps: list[TopicPartition], timestamp_ms: int
                     ) -> dict[tuple[str, int], int | None]:
    """Kafka's ``offsets_for_times``: the first offset whose timestamp is at or after ``timestamp_ms`` per
    partition; None where no message is that recent."""
    if not tps:
        return {}
    found = _list_offsets(admin, tps, OffsetSpec.for_timestamp(timestamp_ms), "offsets for the timestamp")
    return {key: (offset if offset >= 0 else None) for key, offset in found.items()}


def alter_committed(admin: AdminClient, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
    """Commit ``offsets`` for ``group`` as the group's own commit would. ``GroupActive`` when Kafka refuses
    because the group has members."""
    if not offsets:
        return
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())])]
    future = next(iter(admin.alter_consumer_group_offsets(request, request_timeout=REQUEST_TIMEOUT).values()))
    try:
        result = future.result(REQUEST_TIMEOUT + 5)
    except KafkaException as exc:
        _raise_change_error(group, exc, "committed offsets not changed")
    for tp in result.topic_partitions:
        if tp.error is not None:
            _raise_change_error(group, KafkaException(tp.error), "committed offsets not changed")


def delete_group(admin: AdminClient, group: str) -> bool:
    """Delete the group and with it its committed offsets; False when there was no such group."""
    future = admin.delete_consumer_groups([group], request_timeout=REQUEST_TIMEOUT)[group]
    try:
        future.result(REQUEST_TIMEOUT + 5)
    except KafkaException as exc:
        if _kafka_code(exc) == KafkaError.GROUP_ID_NOT_FOUND:
            return False
        _raise_change_error(group, exc, "committed offsets not deleted")
    return True


def _raise_change_error(group: str, exc: KafkaException, what: str):
    if _kafka_code(exc) in GROUP_ACTIVE_CODES:
        raise GroupActive(group, error_code(exc)) from None
    raise KafkaUnavailable(f"{what} ({error_code(exc)})") from None
