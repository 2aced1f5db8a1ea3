"""Several supervisors share the replicas: ``kcm_supervisors`` (registration + lease), ``kcm_replica_slots``
(one row per running consumer replica: holder, lease expiry, fencing epoch, per-slot state) and the consumers'
optional ``placement`` labels (docs/runtime.md, "Several supervisors").

``consumers.placement`` is added with ``op.add_column``, not a batch rebuild: on SQLite a batch rebuild would
drop the 0004 ``kcm_changes`` triggers of the table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "kcm_supervisors",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("labels", JSONType, nullable=True),
        sa.Column("max_workers", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("draining", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "kcm_replica_slots",
        sa.Column("consumer_id", sa.Uuid(), sa.ForeignKey("consumers.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("replica", sa.Integer(), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("handover", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("state", sa.String(16), nullable=True),
        sa.Column("state_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_kcm_replica_slots_holder", "kcm_replica_slots", ["holder"])
    op.add_column("consumers", sa.Column("placement", JSONType, nullable=True))


def downgrade() -> None:
    op.drop_column("consumers", "placement")
    op.drop_index("ix_kcm_replica_slots_holder", table_name="kcm_replica_slots")
    op.drop_table("kcm_replica_slots")
    op.drop_table("kcm_supervisors")
