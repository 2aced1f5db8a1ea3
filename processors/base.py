"""The processor contract: where messages leave kcm.

A processor receives **batches**. A batch is a sequence of message objects with the accessor methods of
``confluent_kafka.Message`` — ``topic() partition() offset() key() value() headers() timestamp()`` — so the
worker hands librdkafka's own objects over without copying; ``Record`` is the same interface for messages
rebuilt elsewhere (dead-letter replay, tests).

Life cycle: ``open()`` once, then for each batch ``process(batch)`` and ``flush()`` (returns only when the
batch is durable in the target), and ``close()`` at the end. Classify every failure (docs/plugins.md):

- ``RetriableError``: may pass if tried again (target down, timeout, lock). The whole batch is retried with the
  processor's policy while the worker keeps its group membership (partitions paused, still polling).
- ``PoisonMessageError``: the data itself cannot be written (invalid JSON for a json column, a constraint
  violation, an encoding error, a message too large for the target). Retrying cannot help: the pipeline goes
  straight to isolating the failing message(s) for ``on_error`` (dead_letter/skip), or fails the batch at once
  under ``retry``.
- ``FatalError``: nothing will work (bad config, authentication, missing target): the worker exits with the
  configuration-error code and the supervisor marks the replica FATAL.

Any other exception counts as retriable.

``context`` is a ``processors.context.ProcessorContext``: the settings, the consumer's cluster (bootstrap servers
and security references), Redis, and whether this is a dead-letter replay. A processor reads where it runs from
there, never from ``Settings.from_env()`` or the environment (a replay runs in the rq worker's process).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from marshmallow import EXCLUDE, Schema

from processors.checks import Check


class MessageLike(Protocol):
    def topic(self) -> str: ...
    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...
    def timestamp(self) -> tuple[int, int]: ...


Batch = Sequence[MessageLike]


@dataclass(frozen=True, slots=True)
class Record:
    """A message outside librdkafka, with ``confluent_kafka.Message``'s accessors."""

    topic_: str
    partition_: int
    offset_: int
    value_: bytes | None
    key_: bytes | None = None
    headers_: tuple[tuple[str, bytes], ...] | None = None
    timestamp_: tuple[int, int] = (0, 0)  # (timestamp type, ms since epoch) like librdkafka
    error_: Any = field(default=None)

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> list[tuple[str, bytes]] | None:
        return list(self.headers_) if self.headers_ is not None else None

    def timestamp(self) -> tuple[int, int]:
        return self.timestamp_

    def error(self):
        return self.error_


class ProcessorError(Exception):
    """Base of the errors a processor raises."""


class RetriableError(ProcessorError):
    """The batch may succeed if tried again (target unreachable, timeout, lock)."""


class FatalError(ProcessorError):
    """Retrying will not help: bad configuration, authentication failure, missing target."""


class PoisonMessageError(ProcessorError):
    """A data error: some message of the batch can never be written (invalid value, constraint violation,
    encoding, size). Not retried on the whole batch; the failing message(s) are isolated at once."""


class EmptyConfigSchema(Schema):
    class Meta:
        unknown = EXCLUDE


class BaseProcessor:
    """Subclass this, set ``ConfigSchema`` and ``description``, and register the class in the
    ``kcm.processors`` entry-point group."""

    ConfigSchema: ClassVar[type[Schema]] = EmptyConfigSchema
    description: ClassVar[str] = ""

    def __init__(self, config: dict, *, consumer_id: str = "", processor_id: str = "", context=None):
        # config arrives already validated and deserialised by ConfigSchema().load()
        self.config = config
        self.consumer_id = consumer_id
        self.processor_id = processor_id
        self.context = context

    @classmethod
    def canonical_config(cls, raw: dict) -> dict:
        """The one stored form of a config (aliases renamed, shapes normalised); raise ``ValidationError`` for
        one that cannot be made canonical (an alias given together with its key). The API stores what this
        returns and ``validate_config`` applies it first, so rows stored before a rename still load.
        Default: unchanged. It sees the whole config, the shared retry keys included."""
        return dict(raw)

    @classmethod
    def validate_config(cls, raw: dict) -> dict:
        """Deserialise and validate ``raw``; raises ``marshmallow.ValidationError`` with per-field messages.

        The shared retry keys (``processors.policy.POLICY_KEYS``) are validated apart and kept in the result,
        so a third-party ``ConfigSchema`` never has to declare them."""
        from marshmallow import ValidationError

        from processors.policy import DeliveryPolicySchema, split_config

        policy_raw, own_raw = split_config(cls.canonical_config(raw or {}))
        errors: dict = {}
        try:
            own = cls.ConfigSchema().load(own_raw)
        except ValidationError as exc:
            errors.update(exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages})
            own = {}
        try:
            DeliveryPolicySchema().load(policy_raw)
        except ValidationError as exc:
            errors.update(exc.messages)
        if errors:
            raise ValidationError(errors)
        return {**own, **policy_raw}

    @classmethod
    def check(cls, config: dict, context) -> list[Check]:
        """What ``POST /consumers/validate/`` should know before the consumer exists: connect to the target and
        report each finding as a ``Check(name, ok, detail)`` (detail for a person, never a secret). ``config``
        is ``validate_config``'s result, ``context`` a ``ProcessorContext`` (no Redis). Must not raise and must
        create nothing. Default: no checks."""
        return []

    def open(self) -> None:
        """Connect to the target. Called once before the first batch."""

    def process(self, batch: Batch) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Return only when everything passed to ``process`` is durable in the target."""

    def discard(self) -> None:
        """Forget whatever a failed ``process``/``flush`` left pending; the pipeline calls it before a retry
        so a retried batch is not written twice."""

    def close(self) -> None:
        """Release the target. Called once; must not raise."""

    def interrupt(self) -> None:
        """Warm shutdown, from another thread: stop any wait of your own (a Retry-After, a backoff) so the call in
        flight fails soon; its batch's offsets stay where they were. Must not raise; the default has none."""

    def committed_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Offsets this processor stored itself (exactly-once sinks), as the next offset to read per
        ``(topic, partition)``. The worker seeks there on assignment. Default: none, Kafka's commit rules."""
        return {}

    @classmethod
    def stored_offsets(cls, config: dict, context, processor_id: str) -> dict[int, int] | None:
        """The offsets a processor that keeps its own (an exactly-once sink) stored for ``context.topic``, as
        ``{partition: next offset to read}``, read without opening the processor (GET
        /consumers/{id}/offsets/). ``config`` is ``validate_config``'s result, ``context`` a
        ``ProcessorContext`` (no Redis). None: this processor keeps no offsets (the default). Raise a
        ``ProcessorError`` (its message shown to the operator, so never a secret) when the store cannot be read."""
        return None

    @classmethod
    def reset_stored_offsets(cls, config: dict, context, processor_id: str, offsets: dict[int, int] | None) -> None:
        """Make the stored offsets of ``context.topic`` say ``offsets`` (``{partition: next offset}``, moved
        back as well as forward; other partitions untouched), or forget every one when ``offsets`` is None, so
        the next start resumes exactly there (POST /consumers/{id}/offsets/reset/, DELETE .../offsets/). Called
        only while every replica is stopped, after the group's committed offsets were changed the same way.
        Default: nothing to do (a processor that keeps no offsets)."""


class BaseStep(BaseProcessor):
    """A processor that changes the batch for the processors after it instead of writing it anywhere (Kafka
    Connect's single message transforms and predicates): ``filter``, ``json_transform``, or your own.

    ``transform(batch)`` returns the messages that go on, in order: fewer (a filter's drops), or rebuilt
    (``Record`` with the original topic, partition, offset, timestamp and headers). Work on the whole batch;
    return ``batch`` itself when nothing changed. When it raises it must have changed nothing (it may update
    the messages it returns, once it returns): the pipeline calls it again on halves of the batch to isolate a
    message that raised ``PoisonMessageError`` (a value that does not parse), which then goes to the step's
    ``on_error`` like a sink's (dead_letter/skip; retry fails the batch).

    Offsets still follow the sinks: the worker stores the batch's offsets after every processor after the step
    accepted what it let through, and a message a step drops counts as processed. A step keeps no offsets of
    its own (``committed_offsets`` is not asked). A dead letter of a step belongs through the step and the
    processors after it (``processors.pipeline.replay_through``, docs/delivery.md); ``process``, what a replay
    to the step alone would call, refuses."""

    def transform(self, batch: Batch) -> Sequence[MessageLike]:
        raise NotImplementedError

    def process(self, batch: Batch) -> None:
        # a replay that reaches a step alone: its output would go nowhere, so fail it rather than report it done
        raise FatalError(f"{type(self).__name__} is a step: a dead letter of a step is replayed through the step "
                         "and the processors after it, not to the step alone")
