"""The Core reads of the hot paths (the list page, the status's state row): statements built once, rows folded
into what ``ConsumerOut`` dumps. Building and tracking ORM instances cost most of a request's CPU (BENCHMARKS.md,
API latency); test_list_fast_path.py pins the equality with the schema dump."""
from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

from sqlalchemy import String, bindparam, func, select, type_coerce
from sqlalchemy.engine import Row

from api.auth import scopes as scope_rules
from schema.models import Consumer, DownstreamProcessor

CONSUMERS = Consumer.__table__
PROCESSORS = DownstreamProcessor.__table__
# no table has this many rows; an OFFSET beyond it (page=10**20) would overflow SQL's 64-bit integers
MAX_SQL_OFFSET = 2**53
# the column order the list statement selects and page_items() unpacks
CONSUMER_FIELDS = ("id", "name", "broker_ip", "broker_port", "bootstrap_servers", "topic", "consumer_group", "client_id",
                   "replicas", "auto_offset_reset", "security", "placement", "status", "desired_state", "generation",
                   "created_at", "updated_at")
PROCESSOR_FIELDS = ("id", "consumer_id", "processor_type", "config", "on_error", "position", "created_at",
                    "updated_at")
STATE_STATEMENT = select(
    *(CONSUMERS.c[name] for name in ("id", "status", "desired_state", "generation", "replicas"))
).where(CONSUMERS.c.id == bindparam("consumer_id"))


def _utc_iso(value: datetime | None) -> str | None:
    """As ``UTCDateTime`` dumps it: SQLite hands back naive datetimes that are UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def _as_text(column):
    """An enum column read as its stored value (the string the schema dumps), not converted to the enum."""
    return type_coerce(column, String).label(column.name)


FILTER_NAMES = ("status", "desired_state", "topic", "consumer_group", "name")


def scope_values(scopes: tuple[str, ...] | None, dialect: str) -> dict:
    """The bound values of ``list_statements``' scope parameters (scope_0, scope_1, ...)."""
    return {f"scope_{n}": scope_rules.sql_pattern(pattern, dialect) for n, pattern in enumerate(scopes or ())}


@cache
def list_statements(filter_names: frozenset[str], scope_count: int | None = None, dialect: str = "postgresql"):
    """Built once per filter combination and scope size (building the statement cost more CPU than running it);
    values, scope patterns, offset and limit are bound parameters. ``scope_count`` None: every consumer group;
    otherwise the group must match one of that many patterns (api/auth/scopes.py), so the page and its total
    are the principal's own.

    The page statement: the total (a scalar subquery over the same filters, so page and total come from one
    snapshot) beside the page's consumers, each joined to its processors in pipeline order; columns in
    CONSUMER_FIELDS + total + PROCESSOR_FIELDS order. The count statement serves an empty page."""
    conditions = [CONSUMERS.c[name] == bindparam(name) for name in FILTER_NAMES if name in filter_names]
    if scope_count is not None:
        operands = [bindparam(f"scope_{n}") for n in range(scope_count)]
        conditions.append(scope_rules.sql_condition(CONSUMERS.c.consumer_group, operands, dialect))
    count = select(func.count()).select_from(CONSUMERS).where(*conditions)
    columns = [_as_text(CONSUMERS.c[name]) if name in ("status", "desired_state") else CONSUMERS.c[name]
               for name in CONSUMER_FIELDS]
    page = (
        select(*columns, count.scalar_subquery().label("total"))
        .where(*conditions)
        .order_by(CONSUMERS.c.created_at, CONSUMERS.c.id)
        .offset(bindparam("first_item"))
        .limit(bindparam("page_size"))
        .subquery("page")
    )
    joined = (
        select(*(page.c[name] for name in CONSUMER_FIELDS), page.c.total,
               *(PROCESSORS.c[name].label(f"processor_{name}") for name in PROCESSOR_FIELDS))
        .select_from(page.outerjoin(PROCESSORS, PROCESSORS.c.consumer_id == page.c.id))
        .order_by(page.c.created_at, page.c.id, PROCESSORS.c.position, PROCESSORS.c.created_at, PROCESSORS.c.id)
    )
    return joined, count


def page_items(rows: list[Row]) -> list[dict]:
    """Joined rows (one per processor, or one with NULL processor columns) folded into dicts equal to what
    ``ConsumerOut(many=True)`` dumps (pinned by tests/integration/api/test_list_fast_path.py). Tuple
    unpacking, not ``row.name``: attribute access on a Row cost ~1 µs each, most of this function's time.
    Strings and integers come from the database as such, so they pass through as the schema would dump them."""
    items: list[dict] = []
    processors: list[dict] = []
    last_id = None
    for (cid, name, broker_ip, broker_port, servers, topic, group, client_id, replicas, offset_reset, security, placement,
         status, desired_state, generation, created_at, updated_at, _total,
         pid, p_consumer_id, p_type, p_config, p_on_error, p_position, p_created_at, p_updated_at) in rows:
        if cid != last_id:
            last_id = cid
            processors = []
            items.append({
                "id": str(cid),
                "name": name,
                "broker_ip": broker_ip,
                "broker_port": broker_port,
                "bootstrap_servers": None if servers is None else [str(server) for server in servers],
                "topic": topic,
                "consumer_group": group,
                "client_id": client_id,
                "replicas": replicas,
                "auto_offset_reset": offset_reset,
                "security": None if security is None else dict(security),
                "placement": None if placement is None else dict(placement),
                "downstream_processors": processors,
                "status": status,
                "desired_state": desired_state,
                "generation": generation,
                "created_at": _utc_iso(created_at),
                "updated_at": _utc_iso(updated_at),
            })
        if pid is not None:
            processors.append({
                "id": str(pid),
                "consumer_id": str(p_consumer_id),
                "processor_type": p_type,
                "config": None if p_config is None else dict(p_config),
                "on_error": p_on_error,
                "position": p_position,
                "created_at": _utc_iso(p_created_at),
                "updated_at": _utc_iso(p_updated_at),
            })
    return items
