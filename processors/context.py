"""What a processor may know about where it runs: one typed, frozen object (after Kafka Connect's
``SinkTaskContext``), built by the worker for the live pipeline and by the dead-letter job for a replay.

A processor reads its settings, its consumer's cluster and the control-plane Redis from here, never from
``Settings.from_env()`` or the environment: a replay in the rq worker then talks to the consumer's own
cluster, not to whatever ``KCM_KAFKA_BOOTSTRAP`` the rq worker happens to have.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from schema.settings import Settings


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class ProcessorContext:
    settings: Settings
    consumer_id: str
    bootstrap_servers: str  # the consumer's own cluster, "host:port,..."
    security: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))  # references, unresolved
    topic: str = ""
    replica: int | None = None  # None outside a worker (a dead-letter replay)
    redis: Any = None  # the control-plane client (rq needs one without decode_responses); None in unit tests
    replay: bool = False  # True when a dead letter is delivered again by the rq worker

    def __post_init__(self):
        object.__setattr__(self, "security", _frozen(self.security))

    @classmethod
    def for_worker(cls, spec, settings: Settings, redis) -> ProcessorContext:
        """The context of a live pipeline, from the worker's ``schema.spec.WorkerSpec``."""
        return cls(settings=settings, consumer_id=spec.consumer_id, bootstrap_servers=spec.bootstrap_servers,
                   security=spec.security, topic=spec.topic, replica=spec.replica, redis=redis)

    def as_envelope(self) -> dict:
        """What a dead letter carries so that a replay reaches the same cluster (references only, no secret)."""
        return {"consumer_id": self.consumer_id, "bootstrap_servers": self.bootstrap_servers,
                "security": dict(self.security), "topic": self.topic}

    @classmethod
    def for_replay(cls, envelope: Mapping[str, Any], settings: Settings, redis) -> ProcessorContext:
        return cls(settings=settings, consumer_id=str(envelope["consumer_id"]),
                   bootstrap_servers=str(envelope.get("bootstrap_servers") or ""),
                   security=envelope.get("security") or {}, topic=str(envelope.get("topic") or ""),
                   replica=None, redis=redis, replay=True)
