"""Consumer desired state: create, read, update, delete, start, stop, restart.

Every mutating call changes the row and its ``generation`` in one transaction and appends a command to the
Redis stream only **after** the commit, so the supervisor never wakes up to a change it cannot see yet.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from api.schemas.consumers import check_broker_form
from api.services.commands import CommandPublisher
from api.services.errors import Invalid, NotFound
from schema.models import Consumer, DownstreamProcessor
from schema.states import CommandAction, DesiredState


@dataclass(frozen=True)
class ControlResult:
    consumer: Consumer
    action: CommandAction
    changed: bool  # False when the call found the consumer already in the asked state

    @property
    def message(self) -> str:
        verb = {CommandAction.START: "start", CommandAction.STOP: "stop", CommandAction.RESTART: "restart"}
        if not self.changed:
            return f"consumer is already {self.consumer.desired_state.value}; nothing changed"
        return f"{verb[self.action]} requested; the supervisor applies generation {self.consumer.generation}"


def load_consumer(session: Session, consumer_id: uuid.UUID, *, lock: bool = False) -> Consumer:
    query = select(Consumer).where(Consumer.id == consumer_id).options(
        selectinload(Consumer.downstream_processors)
    )
    if lock:  # serialise concurrent generation bumps on PostgreSQL (a no-op on SQLite)
        query = query.with_for_update()
    consumer = session.scalars(query).one_or_none()
    if consumer is None:
        raise NotFound(f"consumer {consumer_id} not found")
    return consumer


def bump_if_running(consumer: Consumer) -> None:
    """A config change to a running consumer needs new processes: a new generation tells the supervisor."""
    if consumer.desired_state == DesiredState.RUNNING:
        consumer.generation += 1


def new_processors(specs: list[dict], consumer_id: uuid.UUID | None = None) -> list[DownstreamProcessor]:
    """Processors from validated request data, positioned in list order unless a position is given."""
    return [
        DownstreamProcessor(
            id=uuid.uuid4(),
            consumer_id=consumer_id,
            processor_type=spec["processor_type"],
            config=spec.get("config") or {},
            on_error=spec.get("on_error", "retry"),
            position=spec.get("position", index),
        )
        for index, spec in enumerate(specs)
    ]


class ConsumerService:
    def __init__(self, sessions: sessionmaker[Session], publisher: CommandPublisher):
        self.sessions = sessions
        self.publisher = publisher

    def _reload(self, session: Session, consumer_id: uuid.UUID) -> Consumer:
        session.flush()
        session.expire_all()  # pick up onupdate timestamps and the processor order from the database
        return load_consumer(session, consumer_id)

    # ------------------------------------------------------------------ reads
    def get(self, consumer_id: uuid.UUID) -> Consumer:
        with self.sessions() as session:
            return load_consumer(session, consumer_id)

    def list(self, filters: dict, first_item: int, page_size: int) -> tuple[list[Consumer], int]:
        conditions = [getattr(Consumer, name) == value for name, value in filters.items() if value is not None]
        with self.sessions() as session:
            total = session.scalar(select(func.count()).select_from(Consumer).where(*conditions))
            if first_item >= total:  # also keeps an absurd page number out of SQL's OFFSET
                return [], total
            query = (
                select(Consumer)
                .where(*conditions)
                .options(selectinload(Consumer.downstream_processors))
                .order_by(Consumer.created_at, Consumer.id)
                .offset(first_item)
                .limit(page_size)
            )
            return list(session.scalars(query)), total

    # ------------------------------------------------------------------ writes
    def create(self, data: dict) -> Consumer:
        data = dict(data)
        specs = data.pop("downstream_processors", [])
        consumer_id = uuid.uuid4()
        with self.sessions() as session, session.begin():
            consumer = Consumer(id=consumer_id, desired_state=DesiredState.STOPPED, generation=1, **data)
            session.add(consumer)
            session.add_all(new_processors(specs, consumer_id))
            consumer = self._reload(session, consumer_id)
        self.publisher.publish(consumer.id, consumer.generation, CommandAction.CREATE)
        return consumer

    def update(self, consumer_id: uuid.UUID, changes: dict) -> Consumer:
        changes = dict(changes)
        specs = changes.pop("downstream_processors", None)
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)
            self._apply_broker_form(consumer, changes)
            changes = {name: value for name, value in changes.items() if getattr(consumer, name) != value}
            for name, value in changes.items():
                setattr(consumer, name, value)
            if specs is not None:
                consumer.downstream_processors.clear()
                session.flush()
                session.add_all(new_processors(specs, consumer.id))
            if changes or specs is not None:  # an empty or same-value PATCH restarts nothing
                bump_if_running(consumer)
            consumer = self._reload(session, consumer_id)
        self.publisher.publish(consumer.id, consumer.generation, CommandAction.UPDATE)
        return consumer

    @staticmethod
    def _apply_broker_form(consumer: Consumer, changes: dict) -> None:
        """Naming one form in a PATCH replaces the other; naming both, or leaving neither, is a 422."""
        single_named = any(changes.get(n) is not None for n in ("broker_ip", "broker_port"))
        list_named = changes.get("bootstrap_servers") is not None
        if list_named and not single_named and "broker_ip" not in changes and "broker_port" not in changes:
            changes.update(broker_ip=None, broker_port=None)
        if single_named and not list_named and "bootstrap_servers" not in changes:
            changes["bootstrap_servers"] = None
        merged = {
            name: changes.get(name, getattr(consumer, name))
            for name in ("broker_ip", "broker_port", "bootstrap_servers")
        }
        try:
            check_broker_form(**merged)
        except ValidationError as exc:
            raise Invalid("the consumer needs exactly one broker form", {"json": exc.messages}) from exc

    def delete(self, consumer_id: uuid.UUID) -> None:
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)
            generation = consumer.generation
            session.delete(consumer)
        self.publisher.publish(consumer_id, generation, CommandAction.DELETE)

    def start(self, consumer_id: uuid.UUID) -> ControlResult:
        return self._control(consumer_id, CommandAction.START)

    def stop(self, consumer_id: uuid.UUID) -> ControlResult:
        return self._control(consumer_id, CommandAction.STOP)

    def restart(self, consumer_id: uuid.UUID) -> ControlResult:
        return self._control(consumer_id, CommandAction.RESTART)

    def _control(self, consumer_id: uuid.UUID, action: CommandAction) -> ControlResult:
        target = DesiredState.STOPPED if action == CommandAction.STOP else DesiredState.RUNNING
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)
            # restart always means new processes (and clears a FATAL crash loop); start/stop are idempotent
            changed = action == CommandAction.RESTART or consumer.desired_state != target
            if changed:
                consumer.desired_state = target
                consumer.generation += 1
                consumer = self._reload(session, consumer_id)
        # published even when nothing changed: a harmless wake-up that makes the supervisor reconcile now
        self.publisher.publish(consumer.id, consumer.generation, action)
        return ControlResult(consumer, action, changed)
