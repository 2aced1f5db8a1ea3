"""``desired_state`` gains ``paused`` (POST /consumers/{id}/pause/): workers keep their processes and group
membership and stop fetching.

PostgreSQL's enum type takes the value with ``ALTER TYPE ... ADD VALUE``; SQLite stores the enum as text with no
CHECK constraint (SQLAlchemy 2's ``create_constraint=False``), so it needs nothing. The value cannot be removed
from a PostgreSQL enum: the downgrade turns paused consumers into stopped ones and leaves the label unused.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TYPE desired_state ADD VALUE IF NOT EXISTS 'paused'")


def downgrade() -> None:
    op.execute(sa.text("UPDATE consumers SET desired_state = 'stopped' WHERE desired_state = 'paused'"))
