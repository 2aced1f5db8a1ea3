"""SQLAlchemy 2.x models: the desired state the API writes and the supervisor reads."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from schema.states import ConsumerStatus, DesiredState

# JSONB on PostgreSQL, JSON elsewhere (SQLite)
JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


def _enum(enum_cls, name: str) -> Enum:
    return Enum(enum_cls, name=name, values_callable=lambda e: [m.value for m in e], validate_strings=True)


class Consumer(Base):
    __tablename__ = "consumers"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # optional slug that stands for the id in paths (schema/names.py); NULLs do not collide
    name: Mapped[str | None] = mapped_column(String(100), unique=True, index=True)
    broker_ip: Mapped[str | None] = mapped_column(String(255))
    broker_port: Mapped[int | None] = mapped_column(Integer)
    bootstrap_servers: Mapped[list | None] = mapped_column(JSONType)
    topic: Mapped[str] = mapped_column(String(249), index=True)
    consumer_group: Mapped[str] = mapped_column(String(255), index=True)
    client_id: Mapped[str | None] = mapped_column(String(255))
    replicas: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    auto_offset_reset: Mapped[str] = mapped_column(String(16), default="earliest", server_default="earliest")
    # librdkafka security settings; secrets only as ${env:NAME} / ${file:/path} references
    security: Mapped[dict | None] = mapped_column(JSONType)
    # labels a supervisor must carry to run this consumer ({"zone": "a"}; schema/placement.py), NULL: any
    placement: Mapped[dict | None] = mapped_column(JSONType)
    status: Mapped[ConsumerStatus] = mapped_column(
        _enum(ConsumerStatus, "consumer_status"), default=ConsumerStatus.INACTIVE, index=True
    )
    desired_state: Mapped[DesiredState] = mapped_column(
        _enum(DesiredState, "desired_state"), default=DesiredState.STOPPED
    )
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    downstream_processors: Mapped[list[DownstreamProcessor]] = relationship(
        back_populates="consumer",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="DownstreamProcessor.position, DownstreamProcessor.created_at",
    )


class DownstreamProcessor(Base):
    __tablename__ = "downstream_processors"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    consumer_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("consumers.id", ondelete="CASCADE"), index=True
    )
    processor_type: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict] = mapped_column(JSONType, default=dict)
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    on_error: Mapped[str] = mapped_column(String(16), default="retry", server_default="retry")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    consumer: Mapped[Consumer] = relationship(back_populates="downstream_processors")


class SupervisorRow(Base):
    """One registered supervisor (supervisor/slots.py): it heartbeats ``heartbeat_at`` and ``lease_expires_at``
    (database time); a row whose lease expired is a dead supervisor, and its slots are free to take."""

    __tablename__ = "kcm_supervisors"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # KCM_SUPERVISOR_ID
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    labels: Mapped[dict | None] = mapped_column(JSONType)  # KCM_SUPERVISOR_LABELS
    max_workers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # 0: no cap
    draining: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")  # SIGTERM: giving up
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReplicaSlot(Base):
    """One replica of a running (or paused) consumer, leased by at most one supervisor. ``epoch`` is the fencing
    token: +1 on every claim, and every status write of the holder says ``WHERE epoch = :mine``. ``state`` is the
    holder's view of the replica (a ProcessState value); ``consumers.status`` is folded from the slots."""

    __tablename__ = "kcm_replica_slots"

    consumer_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("consumers.id", ondelete="CASCADE"), primary_key=True)
    replica: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(255), index=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    handover: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")  # being warm-stopped
    state: Mapped[str | None] = mapped_column(String(16))
    state_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ChangeCounter(Base):
    """One row (id 1) whose ``version`` database triggers move on every write to consumers or
    downstream_processors, whoever writes (migration 0004): the API's list cache keys on it."""

    __tablename__ = "kcm_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)


# BIGINT on PostgreSQL; INTEGER on SQLite, whose autoincrement needs exactly that type
AutoIncrement = BigInteger().with_variant(Integer(), "sqlite")


class ConsumerVersion(Base):
    """One immutable configuration of a consumer: the consumer fields and its ordered processors (with their ids)
    after a change, written in the change's transaction (api/services/versions.py). Goes with its consumer."""

    __tablename__ = "consumer_versions"

    id: Mapped[int] = mapped_column(AutoIncrement, primary_key=True, autoincrement=True)
    consumer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("consumers.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per consumer
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    principal_type: Mapped[str | None] = mapped_column(String(16))
    principal_id: Mapped[str | None] = mapped_column(String(255))
    principal_name: Mapped[str | None] = mapped_column(String(255))
    summary: Mapped[str] = mapped_column(String(500))
    config: Mapped[dict] = mapped_column(JSONType)

    __table_args__ = (UniqueConstraint("consumer_id", "number", name="uq_consumer_versions_number"),)


class ApiKey(Base):
    """An API key: the token is shown once at creation and stored only as its SHA-256 hex digest
    (api/auth/tokens.py). A revoked key keeps its row, so audit events still name it."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # api/auth/roles.py
    # consumer-group glob patterns the key is limited to; NULL means every group (api/auth/scopes.py)
    scopes: Mapped[list | None] = mapped_column(JSONType)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """One mutating call, allowed or denied, or one failed authentication (api/services/audit.py). Written in the
    same transaction as the change it records; never holds a token or its digest."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(AutoIncrement, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    principal_type: Mapped[str] = mapped_column(String(16))
    principal_id: Mapped[str | None] = mapped_column(String(255), index=True)
    principal_name: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict | None] = mapped_column(JSONType)
    after: Mapped[dict | None] = mapped_column(JSONType)
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(String(500))
    request_id: Mapped[str | None] = mapped_column(String(128))
    client_address: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str | None] = mapped_column(String(8))
    path: Mapped[str | None] = mapped_column(String(1024))

    __table_args__ = (Index("ix_audit_events_target", "target_type", "target_id"),)
