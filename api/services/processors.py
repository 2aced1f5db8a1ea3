"""Downstream processors of one consumer. A change to a running consumer's pipeline bumps its generation; every
change is audited in its transaction (api/services/audit.py) as the ``actor``'s (default: the current request's),
and writes the consumer's configuration version there too (api/services/versions.py)."""
from __future__ import annotations

import uuid

from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.auth.current import current_actor
from api.auth.principal import Actor
from api.schemas.processors import check_processor_config
from api.services import audit, versions
from api.services.audit import Action, changed, processor_snapshot
from api.services.commands import CommandPublisher
from api.services.consumers import bump_if_running, check_visible, load_consumer, new_processors
from api.services.errors import Invalid, NotFound
from schema.models import Consumer, DownstreamProcessor, utcnow
from schema.states import CommandAction


class ProcessorService:
    def __init__(self, sessions: sessionmaker[Session], publisher: CommandPublisher):
        self.sessions = sessions
        self.publisher = publisher

    @staticmethod
    def _load(session: Session, consumer_id: uuid.UUID, processor_id: uuid.UUID) -> DownstreamProcessor:
        processor = session.scalars(
            select(DownstreamProcessor).where(
                DownstreamProcessor.id == processor_id, DownstreamProcessor.consumer_id == consumer_id
            )
        ).one_or_none()
        if processor is None:
            raise NotFound(f"processor {processor_id} not found on consumer {consumer_id}")
        return processor

    def list(self, consumer_id: uuid.UUID) -> list[DownstreamProcessor]:
        with self.sessions() as session:
            return list(load_consumer(session, consumer_id).downstream_processors)

    def get(self, consumer_id: uuid.UUID, processor_id: uuid.UUID) -> DownstreamProcessor:
        with self.sessions() as session:
            load_consumer(session, consumer_id)  # a missing consumer is the 404 to report first
            return self._load(session, consumer_id, processor_id)

    def create(self, consumer_id: uuid.UUID, data: dict, actor: Actor | None = None) -> DownstreamProcessor:
        actor = actor or current_actor()
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)
            check_visible(actor, consumer)
            if "position" not in data:  # append after the last processor
                last = session.scalar(
                    select(func.max(DownstreamProcessor.position)).where(
                        DownstreamProcessor.consumer_id == consumer_id
                    )
                )
                data = {**data, "position": 0 if last is None else last + 1}
            (processor,) = new_processors([data], consumer_id)
            session.add(processor)
            bump_if_running(consumer)
            self._touch(consumer)
            session.flush()
            session.refresh(processor)
            generation = consumer.generation
            audit.record(session, actor, Action.PROCESSOR_CREATE, target_type="processor", target_id=processor.id,
                         after={"consumer_id": str(consumer_id), **processor_snapshot(processor)})
            versions.record(session, consumer, actor, f"added processor {processor.id} ({processor.processor_type})")
        self.publisher.publish(consumer_id, generation, CommandAction.UPDATE)
        return processor

    def update(self, consumer_id: uuid.UUID, processor_id: uuid.UUID, changes: dict,
               actor: Actor | None = None) -> DownstreamProcessor:
        actor = actor or current_actor()
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)
            check_visible(actor, consumer)
            processor = self._load(session, consumer_id, processor_id)
            before = processor_snapshot(processor)
            if "processor_type" in changes or "config" in changes:
                processor_type = changes.get("processor_type", processor.processor_type)
                config = changes.get("config", processor.config)
                try:
                    # stored in the type's canonical form (aliases renamed), whichever of the two changed
                    changes = {**changes, "config": check_processor_config(processor_type, config)}
                except ValidationError as exc:
                    raise Invalid("invalid processor", {"json": exc.messages}) from exc
            changes = {k: v for k, v in changes.items() if getattr(processor, k) != v}
            for name, value in changes.items():
                setattr(processor, name, value)
            if changes:
                bump_if_running(consumer)
                self._touch(consumer)
            session.flush()
            session.refresh(processor)
            generation = consumer.generation
            old, new = changed(before, processor_snapshot(processor))
            audit.record(session, actor, Action.PROCESSOR_UPDATE, target_type="processor", target_id=processor_id,
                         before=old, after=new)
            versions.record(session, consumer, actor, f"changed processor {processor_id}: {', '.join(new) or '-'}")
        self.publisher.publish(consumer_id, generation, CommandAction.UPDATE)
        return processor

    def delete(self, consumer_id: uuid.UUID, processor_id: uuid.UUID, actor: Actor | None = None) -> None:
        actor = actor or current_actor()
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)
            check_visible(actor, consumer)
            processor = self._load(session, consumer_id, processor_id)
            audit.record(session, actor, Action.PROCESSOR_DELETE, target_type="processor", target_id=processor_id,
                         before={"consumer_id": str(consumer_id), **processor_snapshot(processor)})
            consumer.downstream_processors.remove(processor)
            bump_if_running(consumer)
            self._touch(consumer)
            generation = consumer.generation
            versions.record(session, consumer, actor, f"removed processor {processor_id}")
        self.publisher.publish(consumer_id, generation, CommandAction.UPDATE)

    @staticmethod
    def _touch(consumer: Consumer) -> None:
        """The pipeline is part of the consumer's configuration: its updated_at moves too."""
        consumer.updated_at = utcnow()
