"""The supervisor's view of the state database: read desired state, write replica states and the folded status
(fenced by the slot's epoch, supervisor/slots.py)."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from schema.models import Consumer, ReplicaSlot
from schema.spec import WorkerSpec
from schema.states import ConsumerStatus, DesiredState, ProcessState, consumer_status

log = logging.getLogger("kcm.supervisor")
CONSUMERS = Consumer.__table__
SLOTS = ReplicaSlot.__table__


@dataclass(frozen=True)
class DesiredConsumer:
    consumer_id: str
    generation: int
    running: bool
    replicas: int
    status: ConsumerStatus
    specs: tuple[WorkerSpec, ...]  # one per replica, at this generation
    paused: bool = False  # running workers that fetch nothing: spawned with ``spec.paused`` (``running`` is True)


def load_desired(session_factory, only: set[str] | None = None) -> dict[str, DesiredConsumer]:
    """Every consumer (or those in ``only``: the ones a command named) with its worker specs; a row that cannot
    become a spec is logged and left out."""
    result: dict[str, DesiredConsumer] = {}
    query = sa.select(Consumer).options(selectinload(Consumer.downstream_processors))
    if only is not None:
        query = query.where(Consumer.id.in_([uuid.UUID(cid) for cid in only]))
    with session_factory() as session:
        consumers = session.scalars(query)
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
                running=consumer.desired_state in (DesiredState.RUNNING, DesiredState.PAUSED),
                replicas=replicas,
                status=ConsumerStatus(consumer.status) if consumer.status else ConsumerStatus.INACTIVE,
                specs=specs,
                paused=consumer.desired_state == DesiredState.PAUSED,
            )
    return result


@dataclass(frozen=True)
class StatusWrite:
    accepted: bool  # False: the slot's epoch moved (or it was released): the write was refused, nothing changed
    before: ConsumerStatus | None = None  # the consumer's folded status, when this write changed it
    after: ConsumerStatus | None = None


def write_status(session_factory, consumer_id: str, replica: int, *, holder: str, epoch: int,
                 state: ProcessState) -> StatusWrite:
    """Record one replica's state on its slot, fenced: only ``WHERE holder = :me AND epoch = :mine``; then fold
    ``consumers.status`` from all its slots (``schema.states.consumer_status``) under the consumer's row lock, so
    two supervisors writing two replicas of one consumer never lose each other's word. ``updated_at`` stays as
    the API left it (status is observed, not desired)."""
    cid = uuid.UUID(consumer_id)
    with session_factory() as session, session.begin():
        done = session.execute(
            sa.update(SLOTS)
            .where(SLOTS.c.consumer_id == cid, SLOTS.c.replica == replica, SLOTS.c.holder == holder,
                   SLOTS.c.epoch == epoch)
            .values(state=ProcessState(state).value, state_at=datetime.now(UTC))
        )
        if done.rowcount != 1:
            return StatusWrite(False)
        row = session.execute(sa.select(CONSUMERS.c.replicas, CONSUMERS.c.status)
                              .where(CONSUMERS.c.id == cid).with_for_update()).first()
        if row is None:
            return StatusWrite(True)
        found = dict(session.execute(sa.select(SLOTS.c.replica, SLOTS.c.state)
                                     .where(SLOTS.c.consumer_id == cid, SLOTS.c.replica < row.replicas)).all())
        folded = consumer_status([_process_state(found.get(n)) for n in range(int(row.replicas or 0))])
        current = ConsumerStatus(row.status) if row.status else ConsumerStatus.INACTIVE
        if folded == current:
            return StatusWrite(True)
        session.execute(sa.update(CONSUMERS).where(CONSUMERS.c.id == cid)
                        .values(status=folded, updated_at=CONSUMERS.c.updated_at))
    return StatusWrite(True, current, folded)


def _process_state(value: str | None) -> ProcessState:
    try:
        return ProcessState(value) if value else ProcessState.UNKNOWN  # no holder has reported yet
    except ValueError:
        return ProcessState.UNKNOWN
