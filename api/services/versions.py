"""Configuration history: every change to a consumer or its processors writes an immutable version (the whole
configuration after the change), in the change's transaction; a rollback writes a new one equal to an old one.

A version's ``config`` holds the consumer fields of ``VERSIONED_FIELDS`` and ``downstream_processors``, the
processors in pipeline order with their ids (secrets only as references, as stored). Numbers run 1, 2, ... per
consumer; the callers hold the consumer's row lock (PostgreSQL), so two changes cannot take the same number.
Versions go with their consumer (FK cascade); the audit trail keeps the record.
"""
from __future__ import annotations

import uuid

from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.auth.current import current_actor
from api.auth.principal import Actor
from api.schemas.processors import check_processor_config
from api.services import audit
from api.services.audit import Action, changed, consumer_snapshot, processor_snapshot
from api.services.commands import CommandPublisher
from api.services.errors import Invalid, NotFound
from schema.models import ConsumerVersion, DownstreamProcessor, utcnow
from schema.states import CommandAction

# the audit action of a rollback (the ``Action`` enum of api/services/audit.py should name it too)
ROLLBACK_ACTION = Action.CONSUMER_ROLLBACK
VERSIONED_FIELDS = ("name", "broker_ip", "broker_port", "bootstrap_servers", "topic", "consumer_group",
                    "client_id", "replicas", "auto_offset_reset", "security", "placement")
PROCESSOR_FIELDS = ("processor_type", "config", "on_error", "position")
PROCESSORS = "downstream_processors"
MAX_SUMMARY = 500


def configuration(session: Session, consumer) -> dict:
    """The consumer's configuration as it is in this transaction (processors read back after a flush)."""
    session.flush()
    processors = session.scalars(
        select(DownstreamProcessor).where(DownstreamProcessor.consumer_id == consumer.id)
        .order_by(DownstreamProcessor.position, DownstreamProcessor.created_at, DownstreamProcessor.id)
    ).all()
    config = {name: getattr(consumer, name) for name in VERSIONED_FIELDS}
    config[PROCESSORS] = [processor_snapshot(processor) for processor in processors]
    return config


def _latest(session: Session, consumer_id: uuid.UUID) -> ConsumerVersion | None:
    return session.scalars(select(ConsumerVersion).where(ConsumerVersion.consumer_id == consumer_id)
                           .order_by(ConsumerVersion.number.desc()).limit(1)).one_or_none()


def record(session: Session, consumer, actor: Actor | None, summary: str) -> ConsumerVersion | None:
    """A new version when the configuration differs from the latest one (a same-value change writes none)."""
    config = configuration(session, consumer)
    latest = _latest(session, consumer.id)
    if latest is not None and latest.config == config:
        return None
    principal = (actor or current_actor()).principal
    version = ConsumerVersion(consumer_id=consumer.id, number=1 if latest is None else latest.number + 1,
                              created_at=utcnow(), principal_type=principal.kind, principal_id=principal.id,
                              principal_name=principal.name, summary=summary[:MAX_SUMMARY], config=config)
    session.add(version)
    return version


def summary_of(before: dict, after: dict, verb: str = "changed") -> str:
    """``changed topic, replicas`` / ``changed downstream_processors``: the names of what differs."""
    names = [name for name in (*VERSIONED_FIELDS, PROCESSORS) if before.get(name) != after.get(name)]
    return f"{verb} {', '.join(names)}" if names else verb


def diff(before: dict, after: dict) -> list[dict]:
    """Field-level changes from ``before`` to ``after``; processors are matched by id."""
    changes = [{"field": name, "change": "changed", "before": before.get(name), "after": after.get(name)}
               for name in VERSIONED_FIELDS if before.get(name) != after.get(name)]
    old = {p["id"]: p for p in before.get(PROCESSORS) or []}
    new = {p["id"]: p for p in after.get(PROCESSORS) or []}
    for pid, processor in new.items():
        field = f"{PROCESSORS}[{pid}]"
        if pid not in old:
            changes.append({"field": field, "change": "added", "before": None, "after": processor})
            continue
        changes.extend({"field": f"{field}.{name}", "change": "changed", "before": old[pid].get(name),
                        "after": processor.get(name)}
                       for name in PROCESSOR_FIELDS if old[pid].get(name) != processor.get(name))
    changes.extend({"field": f"{PROCESSORS}[{pid}]", "change": "removed", "before": processor, "after": None}
                   for pid, processor in old.items() if pid not in new)
    return changes


class VersionService:
    """Reads of the history, and the rollback (admin). ``consumers`` is the ConsumerService whose rules (scope,
    replicas, name) a rollback applies like a PATCH does."""

    def __init__(self, sessions: sessionmaker[Session], publisher: CommandPublisher, consumers):
        self.sessions = sessions
        self.publisher = publisher
        self.consumers = consumers

    def _consumer(self, session: Session, consumer_id: uuid.UUID, actor: Actor | None, *, lock: bool = False):
        from api.services.consumers import check_visible, load_consumer

        consumer = load_consumer(session, consumer_id, lock=lock)
        check_visible(actor or current_actor(), consumer)
        return consumer

    @staticmethod
    def _version(session: Session, consumer_id: uuid.UUID, number: int) -> ConsumerVersion:
        version = session.scalars(select(ConsumerVersion).where(
            ConsumerVersion.consumer_id == consumer_id, ConsumerVersion.number == number)).one_or_none()
        if version is None:
            raise NotFound(f"consumer {consumer_id} has no version {number}")
        return version

    def page(self, consumer_id: uuid.UUID, first_item: int, page_size: int,
             actor: Actor | None = None) -> tuple[list[ConsumerVersion], int]:
        """Newest first."""
        with self.sessions() as session:
            self._consumer(session, consumer_id, actor)
            condition = ConsumerVersion.consumer_id == consumer_id
            total = session.scalar(select(func.count()).select_from(ConsumerVersion).where(condition))
            if first_item >= total:
                return [], total
            return list(session.scalars(select(ConsumerVersion).where(condition)
                                        .order_by(ConsumerVersion.number.desc())
                                        .offset(first_item).limit(page_size))), total

    def get(self, consumer_id: uuid.UUID, number: int, actor: Actor | None = None) -> ConsumerVersion:
        with self.sessions() as session:
            self._consumer(session, consumer_id, actor)
            return self._version(session, consumer_id, number)

    def diff(self, consumer_id: uuid.UUID, number: int, against: int | None = None,
             actor: Actor | None = None) -> dict:
        """What changed from version ``against`` (default: the one before) to version ``number``."""
        against = number - 1 if against is None else against
        with self.sessions() as session:
            self._consumer(session, consumer_id, actor)
            version = self._version(session, consumer_id, number)
            if against < 1:
                before: dict = {PROCESSORS: []}  # version 1 against nothing: everything was added
            else:
                before = self._version(session, consumer_id, against).config
            return {"version": number, "against": against, "changes": diff(before, version.config)}

    # ------------------------------------------------------------------ rollback
    def rollback(self, consumer_id: uuid.UUID, number: int | None = None, actor: Actor | None = None):
        """Make the configuration equal to version ``number`` (default: the one before the latest) by writing
        a new version; a running consumer gets a new generation, as after a PATCH. Returns the consumer."""
        from api.services.consumers import bump_if_running

        actor = actor or current_actor()
        with self.sessions() as session, session.begin():
            consumer = self._consumer(session, consumer_id, actor, lock=True)
            if number is None:
                latest = _latest(session, consumer_id)
                number = 0 if latest is None else latest.number - 1
                if number < 1:
                    message = "This consumer has no previous version to roll back to."
                    raise Invalid(message, {"json": {"version": [message]}})
            target = self._version(session, consumer_id, number).config
            self._check_restorable(target, number)
            self.consumers.check_rollback(actor, consumer, target)
            before = consumer_snapshot(consumer)
            if configuration(session, consumer) != target:
                self._restore(session, consumer, target)
                bump_if_running(consumer)
                consumer.updated_at = utcnow()
                record(session, consumer, actor, f"rollback to version {number}")
            consumer = self.consumers.reload(session, consumer_id)
            old, new = changed(before, consumer_snapshot(consumer))
            audit.record(session, actor, ROLLBACK_ACTION, target_type="consumer", target_id=consumer_id,
                         before={"version": number, **old}, after=new)
        self.publisher.publish(consumer.id, consumer.generation, CommandAction.UPDATE)
        return consumer

    @staticmethod
    def _check_restorable(target: dict, number: int) -> None:
        """Every processor of the version is of an installed type and its config still valid (422 otherwise)."""
        problems = []
        for index, spec in enumerate(target.get(PROCESSORS) or []):
            try:
                check_processor_config(spec["processor_type"], spec.get("config"))
            except ValidationError as exc:
                messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
                if "processor_type" in messages:
                    problems.append(f"processor {index} ({spec['processor_type']!r}): its processor type is "
                                    f"not installed here: {'; '.join(map(str, messages['processor_type']))}")
                else:
                    problems.append(f"processor {index} ({spec['processor_type']!r}): its config is no longer "
                                    f"valid: {messages.get('config', messages)}")
        if problems:
            message = f"Version {number} cannot be restored: " + " ".join(problems)
            raise Invalid(message, {"json": {"version": problems}})

    @staticmethod
    def _restore(session: Session, consumer, target: dict) -> None:
        """The consumer fields and pipeline of ``target``; a processor keeps its id when it still exists or its
        id is free (so its dead letters stay replayable)."""
        for name in VERSIONED_FIELDS:
            setattr(consumer, name, target.get(name))
        current = {str(p.id): p for p in consumer.downstream_processors}
        wanted = {spec["id"] for spec in target.get(PROCESSORS) or []}
        for pid, processor in current.items():
            if pid not in wanted:
                consumer.downstream_processors.remove(processor)
        session.flush()
        for spec in target.get(PROCESSORS) or []:
            values = {name: spec.get(name) for name in PROCESSOR_FIELDS}
            values["config"] = values["config"] or {}
            processor = current.get(spec["id"])
            if processor is not None:
                for name, value in values.items():
                    if getattr(processor, name) != value:
                        setattr(processor, name, value)
                continue
            pid = uuid.UUID(spec["id"])
            if session.get(DownstreamProcessor, pid) is not None:  # held elsewhere: a new id
                pid = uuid.uuid4()
            session.add(DownstreamProcessor(id=pid, consumer_id=consumer.id, **values))
