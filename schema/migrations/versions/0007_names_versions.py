"""Consumer names and configuration history: ``consumers.name`` (an optional unique slug) and
``consumer_versions`` (one immutable configuration per change, api/services/versions.py).

The column is added with ``op.add_column`` and its unique index with ``op.create_index``, which SQLite does in
place: ``batch_alter_table`` would copy the table and drop 0004's kcm_changes triggers. ``consumer_versions`` is
outside kcm_changes (like the audit trail): writing a version must not invalidate cached list pages by itself
(the change it records already did).

Every consumer that exists at upgrade time gets version 1, its configuration as it is then, so the first change
after the upgrade has something to roll back to.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""
import json
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
AutoIncrement = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# spelled here, not imported from api/services/versions.py: a migration keeps the shape it was written with
CONSUMER_FIELDS = ("name", "broker_ip", "broker_port", "bootstrap_servers", "topic", "consumer_group", "client_id",
                   "replicas", "auto_offset_reset", "security")
PROCESSOR_FIELDS = ("processor_type", "config", "on_error", "position")


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _backfill() -> None:
    conn = op.get_bind()
    versions = sa.table("consumer_versions", sa.column("consumer_id", sa.Uuid()), sa.column("number"),
                        sa.column("created_at"), sa.column("principal_type"), sa.column("summary"),
                        sa.column("config", JSONType))
    consumers = conn.execute(sa.text(f"SELECT id, {', '.join(CONSUMER_FIELDS)} FROM consumers")).mappings().all()
    processors = conn.execute(sa.text(
        f"SELECT id, consumer_id, {', '.join(PROCESSOR_FIELDS)} FROM downstream_processors "
        "ORDER BY position, created_at, id")).mappings().all()
    now = datetime.now(UTC)
    rows = []
    for consumer in consumers:
        config = {name: _json(consumer[name]) if name in ("bootstrap_servers", "security") else consumer[name]
                  for name in CONSUMER_FIELDS}
        config["downstream_processors"] = [
            {"id": str(p["id"]), **{name: _json(p[name]) for name in PROCESSOR_FIELDS}}
            for p in processors if str(p["consumer_id"]) == str(consumer["id"])
        ]
        consumer_id = consumer["id"]  # a str on SQLite, a UUID on PostgreSQL
        rows.append({"consumer_id": uuid.UUID(str(consumer_id)), "number": 1, "created_at": now, "principal_type": "system",
                     "summary": "configuration when history began (migration 0007)", "config": config})
    if rows:
        op.bulk_insert(versions, rows)


def upgrade() -> None:
    op.add_column("consumers", sa.Column("name", sa.String(100), nullable=True))
    op.create_index("ix_consumers_name", "consumers", ["name"], unique=True)
    op.create_table(
        "consumer_versions",
        sa.Column("id", AutoIncrement, primary_key=True, autoincrement=True),
        sa.Column("consumer_id", sa.Uuid(), sa.ForeignKey("consumers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("principal_type", sa.String(16), nullable=True),
        sa.Column("principal_id", sa.String(255), nullable=True),
        sa.Column("principal_name", sa.String(255), nullable=True),
        sa.Column("summary", sa.String(500), nullable=False),
        sa.Column("config", JSONType, nullable=False),
        sa.UniqueConstraint("consumer_id", "number", name="uq_consumer_versions_number"),
    )
    _backfill()


def downgrade() -> None:
    op.drop_table("consumer_versions")
    op.drop_index("ix_consumers_name", table_name="consumers")
    # SQLite >= 3.35 drops a column in place (no table copy, so 0004's triggers stay)
    op.drop_column("consumers", "name")
