"""Schema v1: the seed's consumers and downstream_processors, plus desired_state and generation.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
consumer_status = sa.Enum("ACTIVE", "INACTIVE", "ERROR", name="consumer_status")
desired_state = sa.Enum("running", "stopped", name="desired_state")


def upgrade() -> None:
    op.create_table(
        "consumers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("broker_ip", sa.String(255), nullable=False),
        sa.Column("broker_port", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("consumer_group", sa.String(255), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=True),
        sa.Column("status", consumer_status, nullable=False, server_default="INACTIVE"),
        sa.Column("desired_state", desired_state, nullable=False, server_default="stopped"),
        sa.Column("generation", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_consumers_topic", "consumers", ["topic"])
    op.create_index("ix_consumers_consumer_group", "consumers", ["consumer_group"])
    op.create_index("ix_consumers_status", "consumers", ["status"])
    op.create_table(
        "downstream_processors",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "consumer_id", sa.Uuid(), sa.ForeignKey("consumers.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("processor_type", sa.String(100), nullable=False),
        sa.Column("config", JSONType, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_downstream_processors_consumer_id", "downstream_processors", ["consumer_id"])


def downgrade() -> None:
    op.drop_table("downstream_processors")
    op.drop_table("consumers")
    consumer_status.drop(op.get_bind(), checkfirst=True)
    desired_state.drop(op.get_bind(), checkfirst=True)
