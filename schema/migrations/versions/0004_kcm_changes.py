"""kcm_changes: one row whose version moves on every write to consumers or downstream_processors.

Triggers bump it inside the writing transaction, so whoever writes (the API, the supervisor's status write,
which leaves updated_at alone, or hand-written SQL) changes the version in the same commit as the data. The API
keys its cache of rendered list pages on it (api/services/consumers.py).

The cache needs each committed state to have a version no earlier state had. PostgreSQL: one statement-level
trigger per table (INSERT, UPDATE, DELETE, TRUNCATE) sets the next value of a sequence, so a truncated row
comes back with a value never handed out before. SQLite has only row triggers: one per table and operation,
version + 1; a deleted row comes back at a random value. Both start at a random 62-bit value, so a database
dropped and migrated again does not replay the versions an API process still has cached.

A later migration that rebuilds consumers or downstream_processors on SQLite (``batch_alter_table`` copies the
table) drops its triggers and must create them again: tests/integration/api/test_list_cache.py checks them at head.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# spelled here, not imported from schema/: a migration keeps the names it was written with
TABLE = "kcm_changes"
WATCHED = ("consumers", "downstream_processors")
PG_SEQUENCE = "kcm_changes_version"
PG_FUNCTION = "kcm_bump_changes"


def _random_start() -> int:
    return secrets.randbits(62)


def _pg_upgrade() -> None:
    op.execute(f"CREATE SEQUENCE {PG_SEQUENCE} START WITH {_random_start()}")
    op.execute(f"INSERT INTO {TABLE} (id, version) VALUES (1, nextval('{PG_SEQUENCE}'))")
    # the row lock on id=1 orders concurrent writers; SET runs after it is taken, so versions rise in commit order
    op.execute(f"""
        CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {TABLE} (id, version) VALUES (1, nextval('{PG_SEQUENCE}'))
            ON CONFLICT (id) DO UPDATE SET version = nextval('{PG_SEQUENCE}');
            RETURN NULL;
        END
        $$""")
    for table in WATCHED:
        op.execute(f"CREATE TRIGGER {TABLE}_{table} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()")


def _sqlite_upgrade() -> None:
    op.execute(f"INSERT INTO {TABLE} (id, version) VALUES (1, {_random_start()})")
    for table in WATCHED:
        for operation in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER {TABLE}_{table}_{operation.lower()} AFTER {operation} ON {table}
                BEGIN
                    INSERT INTO {TABLE} (id, version) VALUES (1, random() & {2**62 - 1})
                    ON CONFLICT (id) DO UPDATE SET version = version + 1;
                END""")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=f"{TABLE}_one_row"),
    )
    if op.get_context().dialect.name == "postgresql":
        _pg_upgrade()
    else:
        _sqlite_upgrade()


def downgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    for table in WATCHED:
        if postgresql:
            op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_{table} ON {table}")
        else:
            for operation in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_{table}_{operation}")
    if postgresql:
        op.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")
    op.drop_table(TABLE)
    if postgresql:
        op.execute(f"DROP SEQUENCE IF EXISTS {PG_SEQUENCE}")
