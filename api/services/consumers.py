"""Consumer desired state: create, read, update, delete, start, stop, restart.

Every mutating call changes the row and its ``generation`` in one transaction and appends a command to the
Redis stream only **after** the commit, so the supervisor never wakes up to a change it cannot see yet.

Reads on the hot paths (the list, the status) use SQLAlchemy Core rows, not ORM objects: building and
tracking ORM instances cost most of a request's CPU (BENCHMARKS.md, API latency).
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from marshmallow import ValidationError
from sqlalchemy import String, bindparam, func, select, type_coerce
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from api.schemas.consumers import check_broker_form
from api.services.commands import CommandPublisher
from api.services.errors import Invalid, NotFound
from api.services.page_cache import RenderedPageCache, read_change_version
from schema.models import Consumer, DownstreamProcessor
from schema.states import CommandAction, DesiredState


@dataclass(frozen=True)
class ControlResult:
    consumer: Consumer
    action: CommandAction
    changed: bool  # False when the call found the consumer already in the asked state

    @property
    def message(self) -> str:
        verb = {CommandAction.START: "start", CommandAction.STOP: "stop", CommandAction.RESTART: "restart"}
        if not self.changed:
            return f"consumer is already {self.consumer.desired_state.value}; nothing changed"
        return f"{verb[self.action]} requested; the supervisor applies generation {self.consumer.generation}"


def load_consumer(session: Session, consumer_id: uuid.UUID, *, lock: bool = False) -> Consumer:
    query = select(Consumer).where(Consumer.id == consumer_id).options(
        selectinload(Consumer.downstream_processors)
    )
    if lock:  # serialise concurrent generation bumps on PostgreSQL (a no-op on SQLite)
        query = query.with_for_update()
    consumer = session.scalars(query).one_or_none()
    if consumer is None:
        raise NotFound(f"consumer {consumer_id} not found")
    return consumer


def bump_if_running(consumer: Consumer) -> None:
    """A config change to a running consumer needs new processes: a new generation tells the supervisor."""
    if consumer.desired_state == DesiredState.RUNNING:
        consumer.generation += 1


def new_processors(specs: list[dict], consumer_id: uuid.UUID | None = None) -> list[DownstreamProcessor]:
    """Processors from validated request data, positioned in list order unless a position is given."""
    return [
        DownstreamProcessor(
            id=uuid.uuid4(),
            consumer_id=consumer_id,
            processor_type=spec["processor_type"],
            config=spec.get("config") or {},
            on_error=spec.get("on_error", "retry"),
            position=spec.get("position", index),
        )
        for index, spec in enumerate(specs)
    ]


# ---------------------------------------------------------------------- Core reads for the hot paths
CONSUMERS = Consumer.__table__
PROCESSORS = DownstreamProcessor.__table__
# no table has this many rows; an OFFSET beyond it (page=10**20) would overflow SQL's 64-bit integers
MAX_SQL_OFFSET = 2**53
# the column order the list statement selects and page_items() unpacks
CONSUMER_FIELDS = ("id", "broker_ip", "broker_port", "bootstrap_servers", "topic", "consumer_group", "client_id",
                   "replicas", "auto_offset_reset", "security", "status", "desired_state", "generation",
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


FILTER_NAMES = ("status", "desired_state", "topic", "consumer_group")


@cache
def list_statements(filter_names: frozenset[str]):
    """Built once per filter combination (building the statement cost more CPU than running it); values,
    offset and limit are bound parameters.

    The page statement: the total (a scalar subquery over the same filters, so page and total come from one
    snapshot) beside the page's consumers, each joined to its processors in pipeline order; columns in
    CONSUMER_FIELDS + total + PROCESSOR_FIELDS order. The count statement serves an empty page."""
    conditions = [CONSUMERS.c[name] == bindparam(name) for name in FILTER_NAMES if name in filter_names]
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
    for (cid, broker_ip, broker_port, servers, topic, group, client_id, replicas, offset_reset, security, status,
         desired_state, generation, created_at, updated_at, _total,
         pid, p_consumer_id, p_type, p_config, p_on_error, p_position, p_created_at, p_updated_at) in rows:
        if cid != last_id:
            last_id = cid
            processors = []
            items.append({
                "id": str(cid),
                "broker_ip": broker_ip,
                "broker_port": broker_port,
                "bootstrap_servers": None if servers is None else [str(server) for server in servers],
                "topic": topic,
                "consumer_group": group,
                "client_id": client_id,
                "replicas": replicas,
                "auto_offset_reset": offset_reset,
                "security": None if security is None else dict(security),
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


class ConsumerService:
    def __init__(self, sessions: sessionmaker[Session], publisher: CommandPublisher):
        self.sessions = sessions
        self.engine = sessions.kw["bind"]  # the Core reads skip the Session's bookkeeping
        self.publisher = publisher
        self.page_cache = RenderedPageCache()

    def _reload(self, session: Session, consumer_id: uuid.UUID) -> Consumer:
        session.flush()
        session.expire_all()  # pick up onupdate timestamps and the processor order from the database
        return load_consumer(session, consumer_id)

    # ------------------------------------------------------------------ reads
    def get(self, consumer_id: uuid.UUID) -> Consumer:
        with self.sessions() as session:
            return load_consumer(session, consumer_id)

    def list(self, filters: dict, first_item: int, page_size: int) -> tuple[list[Consumer], int]:
        """A page of consumers as ORM objects (created_at, id order) and the total over the filters; the reference
        ``page`` is tested against."""
        conditions = [getattr(Consumer, name) == value for name, value in filters.items() if value is not None]
        with self.sessions() as session:
            total = session.scalar(select(func.count()).select_from(Consumer).where(*conditions))
            if first_item >= total:  # also keeps an absurd page number out of SQL's OFFSET
                return [], total
            query = (
                select(Consumer)
                .where(*conditions)
                .options(selectinload(Consumer.downstream_processors))
                .order_by(Consumer.created_at, Consumer.id)
                .offset(first_item)
                .limit(page_size)
            )
            return list(session.scalars(query)), total

    def page(self, filters: dict, first_item: int, page_size: int, connection=None) -> tuple[list[dict], int]:
        """``list`` as ``ConsumerOut(many=True)`` dumps it, from one Core statement (the ORM objects and their
        dump cost most of a list request's CPU; test_list_fast_path.py pins the equality). Reads on
        ``connection`` when given, else on a connection of its own."""
        if connection is not None:
            return self._read_page(connection, filters, first_item, page_size)
        with self.engine.connect() as conn:
            return self._read_page(conn, filters, first_item, page_size)

    @staticmethod
    def _read_page(conn, filters: dict, first_item: int, page_size: int) -> tuple[list[dict], int]:
        values = {name: value for name, value in filters.items() if value is not None}
        page, count = list_statements(frozenset(values))
        rows = [] if first_item >= MAX_SQL_OFFSET else conn.execute(
            page, {**values, "first_item": first_item, "page_size": page_size}).all()
        if not rows:  # no consumers, or a page past the end
            return [], conn.execute(count, values).scalar_one()
        return page_items(rows), rows[0].total

    def list_rendered(self, filters: dict, first_item: int, page_size: int,
                      render: Callable[[list[dict], int], tuple[object, int]]) -> object:
        """The page as ``render(items, total)`` made it, from the cache when nothing changed since.

        The version is read *before* the page (READ COMMITTED, or autocommit: each statement sees what was
        committed when it started), so a cached page is never older than its key: a write commits its rows and
        its version bump together, and a request that reads the new version cannot find a page under it that
        was read before that commit. ``render`` returns the rendered value and its size in bytes (the cache's
        bound). No version (the row was deleted or truncated away) means no caching."""
        try:
            return self._list_rendered(filters, first_item, page_size, render)
        except DBAPIError as exc:
            # a pooled connection the server dropped (restart, killed backend) within schema.db's idle-ping
            # window: it was just invalidated, and a read is safe to run again on a fresh connection
            if not exc.connection_invalidated:
                raise
            return self._list_rendered(filters, first_item, page_size, render)

    def _list_rendered(self, filters: dict, first_item: int, page_size: int,
                       render: Callable[[list[dict], int], tuple[object, int]]) -> object:
        values = tuple(sorted((name, value) for name, value in filters.items() if value is not None))
        version = read_change_version(self.engine)
        key = (version, values, first_item, page_size)
        if version is not None and (rendered := self.page_cache.get(key)) is not None:
            return rendered
        with self.engine.connect() as conn:  # checked out after the version read: the page is as new or newer
            items, total = self.page(dict(values), first_item, page_size, connection=conn)
        rendered, size = render(items, total)
        if version is not None:
            self.page_cache.put(key, rendered, size)
        return rendered

    def get_state(self, consumer_id: uuid.UUID) -> Row:
        """The columns the status needs (id, status, desired_state, generation, replicas), without processors."""
        with self.engine.connect() as conn:
            row = conn.execute(STATE_STATEMENT, {"consumer_id": consumer_id}).one_or_none()
        if row is None:
            raise NotFound(f"consumer {consumer_id} not found")
        return row

    # ------------------------------------------------------------------ writes
    def create(self, data: dict) -> Consumer:
        data = dict(data)
        specs = data.pop("downstream_processors", [])
        consumer_id = uuid.uuid4()
        with self.sessions() as session, session.begin():
            consumer = Consumer(id=consumer_id, desired_state=DesiredState.STOPPED, generation=1, **data)
            session.add(consumer)
            session.add_all(new_processors(specs, consumer_id))
            consumer = self._reload(session, consumer_id)
        self.publisher.publish(consumer.id, consumer.generation, CommandAction.CREATE)
        return consumer

    def update(self, consumer_id: uuid.UUID, changes: dict) -> Consumer:
        changes = dict(changes)
        specs = changes.pop("downstream_processors", None)
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)
            self._apply_broker_form(consumer, changes)
            changes = {name: value for name, value in changes.items() if getattr(consumer, name) != value}
            for name, value in changes.items():
                setattr(consumer, name, value)
            if specs is not None:
                consumer.downstream_processors.clear()
                session.flush()
                session.add_all(new_processors(specs, consumer.id))
            if changes or specs is not None:  # an empty or same-value PATCH restarts nothing
                bump_if_running(consumer)
            consumer = self._reload(session, consumer_id)
        self.publisher.publish(consumer.id, consumer.generation, CommandAction.UPDATE)
        return consumer

    @staticmethod
    def _apply_broker_form(consumer: Consumer, changes: dict) -> None:
        """Naming one form in a PATCH replaces the other; naming both, or leaving neither, is a 422."""
        single_named = any(changes.get(n) is not None for n in ("broker_ip", "broker_port"))
        list_named = changes.get("bootstrap_servers") is not None
        if list_named and not single_named and "broker_ip" not in changes and "broker_port" not in changes:
            changes.update(broker_ip=None, broker_port=None)
        if single_named and not list_named and "bootstrap_servers" not in changes:
            changes["bootstrap_servers"] = None
        merged = {
            name: changes.get(name, getattr(consumer, name))
            for name in ("broker_ip", "broker_port", "bootstrap_servers")
        }
        try:
            check_broker_form(**merged)
        except ValidationError as exc:
            raise Invalid("the consumer needs exactly one broker form", {"json": exc.messages}) from exc

    def delete(self, consumer_id: uuid.UUID) -> None:
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)
            generation = consumer.generation
            session.delete(consumer)
        self.publisher.publish(consumer_id, generation, CommandAction.DELETE)

    def start(self, consumer_id: uuid.UUID) -> ControlResult:
        return self._control(consumer_id, CommandAction.START)

    def stop(self, consumer_id: uuid.UUID) -> ControlResult:
        return self._control(consumer_id, CommandAction.STOP)

    def restart(self, consumer_id: uuid.UUID) -> ControlResult:
        return self._control(consumer_id, CommandAction.RESTART)

    def _control(self, consumer_id: uuid.UUID, action: CommandAction) -> ControlResult:
        target = DesiredState.STOPPED if action == CommandAction.STOP else DesiredState.RUNNING
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)
            # restart always means new processes (and clears a FATAL crash loop); start/stop are idempotent
            changed = action == CommandAction.RESTART or consumer.desired_state != target
            if changed:
                consumer.desired_state = target
                consumer.generation += 1
                consumer = self._reload(session, consumer_id)
        # published even when nothing changed: a harmless wake-up that makes the supervisor reconcile now
        self.publisher.publish(consumer.id, consumer.generation, action)
        return ControlResult(consumer, action, changed)
