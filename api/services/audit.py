"""The audit trail: one ``audit_events`` row per mutating call, allowed or denied, and per failed authentication.

An allowed change writes its row with ``record(session, ...)`` inside the transaction that makes the change, so
the row exists exactly when the change does. A successful mutating call whose service wrote no row (the
dead-letter calls act on Redis) gets one from api/auth/guard.py after it succeeded (``record_alone``). A denial (401/403, or a 404 that hides an out-of-scope consumer)
has no transaction of its own: ``AuditService.denied`` writes it alone. Rows hold the changed fields' values
before and after (configs hold only secret references), never a token or its digest.

Action names live here (``Action``), used by the views' ``@requires`` declarations and by the services alike.
"""
from __future__ import annotations

import enum
import logging
import uuid
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from api.auth.current import current_actor, mark_audited
from api.auth.principal import Actor
from schema.models import AuditEvent, Consumer, DownstreamProcessor

log = logging.getLogger("kcm.api.audit")

ALLOWED, DENIED = "allowed", "denied"
MAX_DETAIL = 500


class Action(enum.StrEnum):
    CONSUMER_CREATE = "consumer.create"
    CONSUMER_UPDATE = "consumer.update"
    CONSUMER_DELETE = "consumer.delete"
    CONSUMER_START = "consumer.start"
    CONSUMER_STOP = "consumer.stop"
    CONSUMER_RESTART = "consumer.restart"
    CONSUMER_PAUSE = "consumer.pause"
    CONSUMER_RESUME = "consumer.resume"
    CONSUMER_ROLLBACK = "consumer.rollback"
    CONSUMER_VALIDATE = "consumer.validate"
    CONSUMER_OFFSETS_RESET = "consumer.offsets_reset"
    CONSUMER_OFFSETS_DELETE = "consumer.offsets_delete"
    PROCESSOR_CREATE = "processor.create"
    PROCESSOR_UPDATE = "processor.update"
    PROCESSOR_DELETE = "processor.delete"
    DEAD_LETTER_REPLAY = "dead_letter.replay"
    DEAD_LETTER_REPLAY_ALL = "dead_letter.replay_all"
    DEAD_LETTER_DELETE = "dead_letter.delete"
    API_KEY_CREATE = "api_key.create"
    API_KEY_REVOKE = "api_key.revoke"
    AUTHENTICATION = "authentication"  # a presented credential that did not authenticate


CONSUMER_AUDITED_FIELDS = ("name", "broker_ip", "broker_port", "bootstrap_servers", "topic", "consumer_group", "client_id",
                           "replicas", "auto_offset_reset", "security", "desired_state", "generation")
PROCESSOR_AUDITED_FIELDS = ("processor_type", "config", "on_error", "position")


def _plain(value):
    """A JSON-storable form of a column value (enums by value, UUIDs as text)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def processor_snapshot(processor: DownstreamProcessor) -> dict:
    return {"id": str(processor.id), **{name: _plain(getattr(processor, name)) for name in PROCESSOR_AUDITED_FIELDS}}


def consumer_snapshot(consumer: Consumer) -> dict:
    """The consumer's audited fields and its pipeline, as stored."""
    snapshot = {name: _plain(getattr(consumer, name)) for name in CONSUMER_AUDITED_FIELDS}
    snapshot["downstream_processors"] = [processor_snapshot(p) for p in consumer.downstream_processors]
    return snapshot


def changed(before: dict, after: dict) -> tuple[dict, dict]:
    """Only the fields whose value differs, from each side."""
    names = [name for name in after if before.get(name) != after.get(name)]
    names += [name for name in before if name not in after]
    return {n: before.get(n) for n in names}, {n: after.get(n) for n in names}


def _event(actor: Actor, action: str, outcome: str, *, target_type=None, target_id=None, before=None, after=None,
           status_code=None, detail=None) -> AuditEvent:
    principal = actor.principal
    return AuditEvent(
        principal_type=principal.kind,
        principal_id=principal.id,
        principal_name=principal.name,
        role=principal.role.label if principal.role is not None else None,
        action=str(action),
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        before=before,
        after=after,
        outcome=outcome,
        status_code=status_code,
        detail=None if detail is None else detail[:MAX_DETAIL],
        request_id=actor.request_id,
        client_address=actor.client_address,
        method=actor.method,
        path=None if actor.path is None else actor.path[:1024],
    )


def record(session: Session, actor: Actor | None, action: str, *, target_type: str, target_id: object,
           before: dict | None = None, after: dict | None = None) -> None:
    """An allowed change, in the caller's transaction (committed or rolled back with the change). Without an
    actor: the current request's (the system outside a request)."""
    session.add(_event(actor or current_actor(), action, ALLOWED, target_type=target_type, target_id=target_id,
                       before=before, after=after))
    mark_audited()


def write_denied(sessions: sessionmaker[Session], actor: Actor, action: str, status_code: int, detail: str, *,
                 target_type=None, target_id=None) -> None:
    """A refused call, in a transaction of its own. A database that is down loses the row (logged) rather
    than turning the refusal into a 503."""
    try:
        with sessions() as session, session.begin():
            session.add(_event(actor, action, DENIED, target_type=target_type, target_id=target_id,
                               status_code=status_code, detail=detail))
    except DBAPIError as exc:
        log.error("audit row of a denied call not written (%s): action=%s status=%s request_id=%s",
                  type(exc).__name__, action, status_code, actor.request_id)


class AuditService:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def record_alone(self, actor: Actor | None, action: str, *, target_type: str | None, target_id: object,
                     before: dict | None = None, after: dict | None = None) -> None:
        """An allowed action with no database change of its own (a dead-letter replay or delete lives in Redis):
        its row in a transaction of its own, written once the action succeeded. A database that is down loses
        the row (logged): the action already happened."""
        try:
            with self.sessions() as session, session.begin():
                record(session, actor, action, target_type=target_type, target_id=target_id, before=before,
                       after=after)
        except DBAPIError as exc:
            log.error("audit row of an allowed call not written (%s): action=%s target=%s/%s", type(exc).__name__,
                      action, target_type, target_id)

    def denied(self, actor: Actor, action: str, status_code: int, detail: str, *, target_type=None,
               target_id=None) -> None:
        write_denied(self.sessions, actor, action, status_code, detail, target_type=target_type,
                     target_id=target_id)

    def page(self, filters: dict, first_item: int, page_size: int) -> tuple[list[AuditEvent], int]:
        """Newest first; filters: target_type, target_id, principal (id or name), action, outcome, since, until."""
        from sqlalchemy import func

        conditions = []
        for name in ("target_type", "target_id", "action", "outcome"):
            if filters.get(name) is not None:
                conditions.append(getattr(AuditEvent, name) == filters[name])
        if filters.get("principal") is not None:
            conditions.append(or_(AuditEvent.principal_id == filters["principal"],
                                  AuditEvent.principal_name == filters["principal"]))
        since: datetime | None = filters.get("since")
        until: datetime | None = filters.get("until")
        if since is not None:
            conditions.append(AuditEvent.occurred_at >= since)
        if until is not None:
            conditions.append(AuditEvent.occurred_at < until)
        with self.sessions() as session:
            total = session.scalar(select(func.count()).select_from(AuditEvent).where(*conditions))
            if first_item >= total:
                return [], total
            query = (select(AuditEvent).where(*conditions).order_by(AuditEvent.id.desc())
                     .offset(first_item).limit(page_size))
            return list(session.scalars(query)), total
