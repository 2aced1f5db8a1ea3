"""The supervisor's view of the state database: read desired state, write the seed status back."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from schema.models import Consumer
from schema.spec import WorkerSpec
from schema.states import ConsumerStatus, DesiredState

log = logging.getLogger("kcm.supervisor")


@dataclass(frozen=True)
class DesiredConsumer:
    consumer_id: str
    generation: int
    running: bool
    replicas: int
    status: ConsumerStatus
    specs: tuple[WorkerSpec, ...]  # one per replica, at this generation


def load_desired(session_factory) -> dict[str, DesiredConsumer]:
    """Every consumer with its worker specs; a row that cannot become a spec is logged and left out."""
    result: dict[str, DesiredConsumer] = {}
    with session_factory() as session:
        consumers = session.scalars(sa.select(Consumer).options(selectinload(Consumer.downstream_processors)))
        for consumer in consumers:
            cid = str(consumer.id)
            try:
                replicas = max(int(consumer.replicas or 0), 0)
                specs = tuple(WorkerSpec.from_consumer(consumer, n) for n in range(replicas))
            except (TypeError, ValueError) as exc:
                log.error("ConsumerSpecError consumer=%s: %s", cid, exc)
                continue
            result[cid] = DesiredConsumer(
                consumer_id=cid,
                generation=int(consumer.generation or 1),
                running=consumer.desired_state == DesiredState.RUNNING,
                replicas=replicas,
                status=ConsumerStatus(consumer.status) if consumer.status else ConsumerStatus.INACTIVE,
                specs=specs,
            )
    return result


def write_status(session_factory, consumer_id: str, status: ConsumerStatus) -> None:
    """Set ``consumers.status``; ``updated_at`` stays as the API left it (status is observed, not desired)."""
    import uuid

    table = Consumer.__table__
    with session_factory() as session, session.begin():
        session.execute(
            sa.update(table)
            .where(table.c.id == uuid.UUID(consumer_id))
            .values(status=status, updated_at=table.c.updated_at)
        )
