"""Multi-broker bootstrap_servers, replicas, offset reset, security references; processor order and on_error.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("consumers") as batch:
        batch.alter_column("broker_ip", existing_type=sa.String(255), nullable=True)
        batch.alter_column("broker_port", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("bootstrap_servers", JSONType, nullable=True))
        batch.add_column(sa.Column("replicas", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(
            sa.Column("auto_offset_reset", sa.String(16), nullable=False, server_default="earliest")
        )
        batch.add_column(sa.Column("security", JSONType, nullable=True))
    with op.batch_alter_table("downstream_processors") as batch:
        batch.add_column(sa.Column("position", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("on_error", sa.String(16), nullable=False, server_default="retry"))


def downgrade() -> None:
    with op.batch_alter_table("downstream_processors") as batch:
        batch.drop_column("on_error")
        batch.drop_column("position")
    with op.batch_alter_table("consumers") as batch:
        batch.drop_column("security")
        batch.drop_column("auto_offset_reset")
        batch.drop_column("replicas")
        batch.drop_column("bootstrap_servers")
        batch.alter_column("broker_port", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("broker_ip", existing_type=sa.String(255), nullable=False)
