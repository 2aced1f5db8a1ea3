"""The worker specification: everything a worker needs, fixed at one generation, handed over at spawn.

Workers never read kcm's state database; the supervisor serialises this and passes it in the
``KCM_WORKER_SPEC`` environment variable. Secrets appear only as ``${env:NAME}``/``${file:/path}`` references.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from schema.states import DesiredState

SPEC_ENV = "KCM_WORKER_SPEC"
# the supervisor's pid, so a worker can tell that its parent died (workers/parent.py)
PARENT_PID_ENV = "KCM_SUPERVISOR_PID"


@dataclass(frozen=True)
class ProcessorSpec:
    id: str
    processor_type: str
    config: dict = field(default_factory=dict)
    on_error: str = "retry"


@dataclass(frozen=True)
class WorkerSpec:
    consumer_id: str
    replica: int
    generation: int
    bootstrap_servers: str
    topic: str
    group_id: str
    client_id: str | None = None
    auto_offset_reset: str = "earliest"
    security: dict = field(default_factory=dict)
    processors: tuple[ProcessorSpec, ...] = ()
    # start paused (desired state paused): not part of the generation, so a pause never restarts a worker; a live
    # worker follows the pause key instead (workers/control.py)
    paused: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        data = json.loads(text)
        data["processors"] = tuple(ProcessorSpec(**p) for p in data.get("processors", ()))
        return cls(**data)

    @classmethod
    def from_consumer(cls, consumer, replica: int) -> WorkerSpec:
        """Build from a ``schema.models.Consumer`` row (with its processors loaded)."""
        return cls(
            consumer_id=str(consumer.id),
            replica=replica,
            generation=consumer.generation,
            bootstrap_servers=bootstrap_servers_of(consumer),
            topic=consumer.topic,
            group_id=consumer.consumer_group,
            client_id=consumer.client_id,
            auto_offset_reset=consumer.auto_offset_reset or "earliest",
            security=dict(consumer.security or {}),
            processors=tuple(
                ProcessorSpec(
                    id=str(p.id), processor_type=p.processor_type, config=dict(p.config or {}), on_error=p.on_error
                )
                for p in consumer.downstream_processors
            ),
            paused=consumer.desired_state == DesiredState.PAUSED,
        )


def bootstrap_servers_of(consumer) -> str:
    if consumer.bootstrap_servers:
        return ",".join(consumer.bootstrap_servers)
    return f"{consumer.broker_ip}:{consumer.broker_port}"
