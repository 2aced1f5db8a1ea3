"""api_keys joins kcm_changes: every write to api_keys (create, revoke, a role or scope changed by hand, a
delete) moves the same version as a write to consumers or downstream_processors, in the same commit.

Each API process caches ``token digest -> principal`` stamped with the version it was validated at, and the
version every list request reads anyway tells it whether any key changed since (api/services/api_keys.py): a
revoke is refused on the very next request in every process, without a lookup of its own per request.

Same triggers as 0004 (PostgreSQL: one statement-level trigger calling 0004's function; SQLite: one row trigger
per operation). The audit trail stays outside (0005).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# spelled here, not imported from schema/ or 0004: a migration keeps the names it was written with
COUNTER = "kcm_changes"
TABLE = "api_keys"
PG_FUNCTION = "kcm_bump_changes"
SQLITE_OPERATIONS = ("insert", "update", "delete")


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"CREATE TRIGGER {COUNTER}_{TABLE} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {TABLE} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()")
        return
    for operation in SQLITE_OPERATIONS:
        op.execute(f"""
            CREATE TRIGGER {COUNTER}_{TABLE}_{operation} AFTER {operation.upper()} ON {TABLE}
            BEGIN
                INSERT INTO {COUNTER} (id, version) VALUES (1, random() & {2**62 - 1})
                ON CONFLICT (id) DO UPDATE SET version = version + 1;
            END""")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {COUNTER}_{TABLE} ON {TABLE}")
        return
    for operation in SQLITE_OPERATIONS:
        op.execute(f"DROP TRIGGER IF EXISTS {COUNTER}_{TABLE}_{operation}")
