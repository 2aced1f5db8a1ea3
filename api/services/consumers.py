"""Consumer desired state: create, read, update, delete, start, stop, restart, and pause and resume in place
(api/services/pause.py).

Every mutating call changes the row and its ``generation`` in one transaction and appends a command to the
Redis stream only **after** the commit, so the supervisor never wakes up to a change it cannot see yet.

Reads on the hot paths (the list, the status) use SQLAlchemy Core rows (api/services/consumer_reads.py), not ORM
objects. Calls take the ``actor`` they act for: lists are limited to its consumer-group scopes, writes check
them and write their audit row and their configuration version (api/services/versions.py) in their own
transaction (api/services/audit.py). A consumer's optional ``name`` is unique (409) and stands for its id in
paths (api/converters.py).
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from api.auth import scopes as scope_rules
from api.auth.current import current_actor
from api.auth.errors import Forbidden
from api.auth.principal import Actor
from api.schemas.consumers import check_broker_form
from api.services import audit, versions
from api.services.audit import Action, changed, consumer_snapshot
from api.services.commands import CommandPublisher
from api.services.consumer_reads import (
    CONSUMERS,
    MAX_SQL_OFFSET,
    STATE_STATEMENT,
    list_statements,
    page_items,
    scope_values,
)
from api.services.errors import Invalid, NotFound, ServiceError
from api.services.page_cache import RenderedPageCache, read_change_version
from api.services.pause import PAUSE_ACTIONS, PauseControl, refuse_if_stopped
from schema.models import ChangeCounter, Consumer, DownstreamProcessor
from schema.states import CommandAction, DesiredState


class CapReached(ServiceError):
    """The deployment's KCM_MAX_CONSUMERS is reached (409)."""

    status_code = 409


class NameTaken(ServiceError):
    """Another consumer already has the name (409)."""

    status_code = 409

    def __init__(self, name: str):
        message = f"another consumer is already named {name!r}; names are unique"
        super().__init__(message, {"json": {"name": [message]}})


# desired states in which the supervisor keeps the consumer's workers (a paused one's hold their partitions)
LIVE_STATES = frozenset({DesiredState.RUNNING, DesiredState.PAUSED})


@dataclass(frozen=True)
class ControlResult:
    consumer: Consumer
    action: CommandAction
    changed: bool  # False when the call found the consumer already in the asked state
    kept_workers: bool = False  # paused or resumed in place: same generation, same processes

    @property
    def message(self) -> str:
        if not self.changed:
            return f"consumer is already {self.consumer.desired_state.value}; nothing changed"
        if self.kept_workers:
            verb = "paused" if self.action == CommandAction.PAUSE else "resumed"
            return (f"{verb}: the live workers keep generation {self.consumer.generation}, their partitions and "
                    "their group membership")
        return f"{self.action.value} requested; the supervisor applies generation {self.consumer.generation}"


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


def check_visible(actor: Actor, consumer: Consumer) -> None:
    """Defence in depth behind api/auth/guard.py: a consumer outside the actor's scopes is not found."""
    if not actor.principal.sees(consumer.consumer_group):
        raise NotFound(f"consumer {consumer.id} not found")


def bump_if_running(consumer: Consumer) -> None:
    """A config change to a running (or paused) consumer needs new processes: a new generation tells the
    supervisor; a paused consumer's new workers start paused (their spec says so)."""
    if consumer.desired_state in LIVE_STATES:
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


class ConsumerService(PauseControl):
    """Every call that depends on who calls takes an ``actor`` (default: the current request's, api/auth/current.py):
    lists are limited to its consumer-group scopes, writes check them and are audited in their transaction.
    ``pause`` and ``resume`` come from ``PauseControl`` (api/services/pause.py) and run through ``_control``."""

    def __init__(self, sessions: sessionmaker[Session], publisher: CommandPublisher, *,
                 max_consumers: int | None = None, max_replicas: int | None = None):
        self.sessions = sessions
        self.engine = sessions.kw["bind"]  # the Core reads skip the Session's bookkeeping
        self.dialect = self.engine.dialect.name
        self.publisher = publisher
        self.page_cache = RenderedPageCache()
        self.max_consumers, self.max_replicas = max_consumers, max_replicas
        self.versions = versions.VersionService(sessions, publisher, self)

    def reload(self, session: Session, consumer_id: uuid.UUID) -> Consumer:
        session.flush()
        session.expire_all()  # pick up onupdate timestamps and the processor order from the database
        return load_consumer(session, consumer_id)

    # ------------------------------------------------------------------ reads
    def get(self, consumer_id: uuid.UUID) -> Consumer:
        with self.sessions() as session:
            return load_consumer(session, consumer_id)

    def group_of(self, consumer_id: uuid.UUID | str) -> str | None:
        """The consumer's group, or None when there is no such consumer (the scope check of direct access).
        A ``str`` is a name from the path, not resolved yet (api/converters.py)."""
        column = CONSUMERS.c.id if isinstance(consumer_id, uuid.UUID) else CONSUMERS.c.name
        with self.engine.connect() as conn:
            return conn.execute(select(CONSUMERS.c.consumer_group).where(column == consumer_id)).scalar()

    def id_of(self, name: str) -> uuid.UUID | None:
        """The id of the consumer with this name, or None."""
        with self.engine.connect() as conn:
            return conn.execute(select(CONSUMERS.c.id).where(CONSUMERS.c.name == name)).scalar()

    def list(self, filters: dict, first_item: int, page_size: int,
             scopes: tuple[str, ...] | None = None) -> tuple[list[Consumer], int]:
        """A page of consumers as ORM objects (created_at, id order) and the total over the filters and scopes;
        the reference ``page`` is tested against."""
        conditions = [getattr(Consumer, name) == value for name, value in filters.items() if value is not None]
        if scopes is not None:
            patterns = [scope_rules.sql_pattern(pattern, self.dialect) for pattern in scopes]
            conditions.append(scope_rules.sql_condition(Consumer.consumer_group, patterns, self.dialect))
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

    def page(self, filters: dict, first_item: int, page_size: int, connection=None,
             scopes: tuple[str, ...] | None = None) -> tuple[list[dict], int]:
        """``list`` as ``ConsumerOut(many=True)`` dumps it, from one Core statement (the ORM objects and their
        dump cost most of a list request's CPU; test_list_fast_path.py pins the equality). Reads on
        ``connection`` when given, else on a connection of its own."""
        if connection is not None:
            return self._read_page(connection, filters, first_item, page_size, scopes)
        with self.engine.connect() as conn:
            return self._read_page(conn, filters, first_item, page_size, scopes)

    def _read_page(self, conn, filters: dict, first_item: int, page_size: int,
                   scopes: tuple[str, ...] | None) -> tuple[list[dict], int]:
        values = {name: value for name, value in filters.items() if value is not None}
        page, count = list_statements(frozenset(values), None if scopes is None else len(scopes), self.dialect)
        values.update(scope_values(scopes, self.dialect))
        rows = [] if first_item >= MAX_SQL_OFFSET else conn.execute(
            page, {**values, "first_item": first_item, "page_size": page_size}).all()
        if not rows:  # no consumers, or a page past the end
            return [], conn.execute(count, values).scalar_one()
        return page_items(rows), rows[0].total

    def list_rendered(self, filters: dict, first_item: int, page_size: int,
                      render: Callable[[list[dict], int], tuple[object, int]], actor: Actor | None = None) -> object:
        """The page as ``render(items, total)`` made it, from the cache when nothing changed since.

        The version is read *before* the page (READ COMMITTED, or autocommit: each statement sees what was
        committed when it started), so a cached page is never older than its key: a write commits its rows and
        its version bump together, and a request that reads the new version cannot find a page under it that
        was read before that commit. ``render`` returns the rendered value and its size in bytes (the cache's
        bound). No version (the row was deleted or truncated away) means no caching. The key holds the actor's
        scopes: principals with different scopes never share a page."""
        scopes = (actor or current_actor()).principal.scopes
        try:
            return self._list_rendered(filters, first_item, page_size, render, scopes)
        except DBAPIError as exc:
            # a pooled connection the server dropped (restart, killed backend) within schema.db's idle-ping
            # window: it was just invalidated, and a read is safe to run again on a fresh connection
            if not exc.connection_invalidated:
                raise
            return self._list_rendered(filters, first_item, page_size, render, scopes)

    def _list_rendered(self, filters: dict, first_item: int, page_size: int,
                       render: Callable[[list[dict], int], tuple[object, int]],
                       scopes: tuple[str, ...] | None) -> object:
        values = tuple(sorted((name, value) for name, value in filters.items() if value is not None))
        version = read_change_version(self.engine)
        key = (version, values, first_item, page_size, scopes)
        if version is not None and (rendered := self.page_cache.get(key)) is not None:
            return rendered
        with self.engine.connect() as conn:  # checked out after the version read: the page is as new or newer
            items, total = self.page(dict(values), first_item, page_size, connection=conn, scopes=scopes)
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
    def _deny(self, actor: Actor, action: Action, error: ServiceError, consumer_id: object = None) -> None:
        audit.write_denied(self.sessions, actor, action, error.status_code, error.message,
                           target_type="consumer", target_id=consumer_id)
        raise error

    def _check_group(self, actor: Actor, action: Action, group: str | None, consumer_id: object = None) -> None:
        """Creating a consumer in, or moving one to, a group outside the actor's scopes is a 403."""
        if group is not None and not actor.principal.sees(group):
            self._deny(actor, action, Forbidden(f"consumer group {group!r} is outside the caller's scopes"),
                       consumer_id)

    def _check_replicas(self, replicas: int | None) -> None:
        if self.max_replicas is not None and replicas is not None and replicas > self.max_replicas:
            message = f"At most {self.max_replicas} replicas per consumer in this deployment (KCM_MAX_REPLICAS)."
            raise Invalid(message, {"json": {"replicas": [message]}})

    @staticmethod
    def _check_name_free(session: Session, name: str | None, consumer_id: uuid.UUID | None = None) -> None:
        if name is None:
            return
        holder = session.scalar(select(Consumer.id).where(Consumer.name == name))
        if holder is not None and holder != consumer_id:
            raise NameTaken(name)

    def _name_race(self, exc: IntegrityError, name: str | None, consumer_id: uuid.UUID) -> None:
        """A concurrent write took the name between the check and the commit: the same 409."""
        if name is not None and self.id_of(name) not in (None, consumer_id):
            raise NameTaken(name) from exc
        raise exc

    def check_new(self, data: dict, actor: Actor | None = None) -> None:
        """The checks of ``create`` that need the stored state, without writing (POST /consumers/validate/)."""
        actor = actor or current_actor()
        self._check_group(actor, Action.CONSUMER_CREATE, data.get("consumer_group"))
        self._check_replicas(data.get("replicas"))
        with self.sessions() as session:
            self._check_name_free(session, data.get("name"))
            if self.max_consumers is not None:
                count = session.scalar(select(func.count()).select_from(Consumer))
                if count >= self.max_consumers:
                    raise CapReached(f"this deployment already has {count} consumers, its limit "
                                     f"(KCM_MAX_CONSUMERS={self.max_consumers}); delete one first")

    def check_rollback(self, actor: Actor, consumer: Consumer, target: dict) -> None:
        """A rollback meets the rules a PATCH to the same configuration would (scope, replicas, name)."""
        self._check_group(actor, versions.ROLLBACK_ACTION, target.get("consumer_group"), consumer.id)
        self._check_replicas(target.get("replicas"))
        self._check_name_free(Session.object_session(consumer), target.get("name"), consumer.id)

    def _check_cap(self, session: Session) -> None:
        if self.max_consumers is None:
            return
        # the kcm_changes row lock (PostgreSQL) orders concurrent creates, so two cannot both take the last place
        session.execute(select(ChangeCounter.version).where(ChangeCounter.id == 1).with_for_update())
        count = session.scalar(select(func.count()).select_from(Consumer))
        if count >= self.max_consumers:
            raise CapReached(f"this deployment already has {count} consumers, its limit (KCM_MAX_CONSUMERS="
                             f"{self.max_consumers}); delete one first")

    def create(self, data: dict, actor: Actor | None = None) -> Consumer:
        actor = actor or current_actor()
        data = dict(data)
        self._check_group(actor, Action.CONSUMER_CREATE, data.get("consumer_group"))
        self._check_replicas(data.get("replicas"))
        specs = data.pop("downstream_processors", [])
        consumer_id = uuid.uuid4()
        try:
            with self.sessions() as session, session.begin():
                self._check_cap(session)
                self._check_name_free(session, data.get("name"))
                consumer = Consumer(id=consumer_id, desired_state=DesiredState.STOPPED, generation=1, **data)
                session.add(consumer)
                session.add_all(new_processors(specs, consumer_id))
                consumer = self.reload(session, consumer_id)
                audit.record(session, actor, Action.CONSUMER_CREATE, target_type="consumer",
                             target_id=consumer_id, after=consumer_snapshot(consumer))
                versions.record(session, consumer, actor, "created")
        except IntegrityError as exc:
            self._name_race(exc, data.get("name"), consumer_id)
        self.publisher.publish(consumer.id, consumer.generation, CommandAction.CREATE)
        return consumer

    def update(self, consumer_id: uuid.UUID, changes: dict, actor: Actor | None = None) -> Consumer:
        actor = actor or current_actor()
        changes = dict(changes)
        self._check_group(actor, Action.CONSUMER_UPDATE, changes.get("consumer_group"), consumer_id)
        self._check_replicas(changes.get("replicas"))
        specs = changes.pop("downstream_processors", None)
        try:
            consumer = self._update(consumer_id, changes, specs, actor)
        except IntegrityError as exc:
            self._name_race(exc, changes.get("name"), consumer_id)
        self.publisher.publish(consumer.id, consumer.generation, CommandAction.UPDATE)
        return consumer

    def _update(self, consumer_id: uuid.UUID, changes: dict, specs: list | None, actor: Actor) -> Consumer:
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)
            check_visible(actor, consumer)
            before = consumer_snapshot(consumer)
            config_before = versions.configuration(session, consumer)
            self._apply_broker_form(consumer, changes)
            changes = {name: value for name, value in changes.items() if getattr(consumer, name) != value}
            self._check_name_free(session, changes.get("name"), consumer_id)
            for name, value in changes.items():
                setattr(consumer, name, value)
            if specs is not None:
                consumer.downstream_processors.clear()
                session.flush()
                session.add_all(new_processors(specs, consumer.id))
            # an empty or same-value PATCH restarts nothing; nor does placement, which is not in the worker's spec
            # (the supervisors move the slots instead)
            if set(changes) - {"placement"} or specs is not None:
                bump_if_running(consumer)
            consumer = self.reload(session, consumer_id)
            old, new = changed(before, consumer_snapshot(consumer))
            audit.record(session, actor, Action.CONSUMER_UPDATE, target_type="consumer", target_id=consumer_id,
                         before=old, after=new)
            config_after = versions.configuration(session, consumer)
            versions.record(session, consumer, actor, versions.summary_of(config_before, config_after))
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

    def delete(self, consumer_id: uuid.UUID, actor: Actor | None = None) -> None:
        actor = actor or current_actor()
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)
            check_visible(actor, consumer)
            generation = consumer.generation
            audit.record(session, actor, Action.CONSUMER_DELETE, target_type="consumer", target_id=consumer_id,
                         before=consumer_snapshot(consumer))
            session.delete(consumer)
        self.publisher.publish(consumer_id, generation, CommandAction.DELETE)

    def start(self, consumer_id: uuid.UUID, actor: Actor | None = None) -> ControlResult:
        """Start a stopped consumer (new generation); a paused one is resumed (same generation, no restart)."""
        return self._control(consumer_id, CommandAction.START, Action.CONSUMER_START, actor)

    def stop(self, consumer_id: uuid.UUID, actor: Actor | None = None) -> ControlResult:
        return self._control(consumer_id, CommandAction.STOP, Action.CONSUMER_STOP, actor)

    def restart(self, consumer_id: uuid.UUID, actor: Actor | None = None) -> ControlResult:
        return self._control(consumer_id, CommandAction.RESTART, Action.CONSUMER_RESTART, actor)

    def _control(self, consumer_id: uuid.UUID, action: CommandAction, audit_action: Action,
                 actor: Actor | None) -> ControlResult:
        actor = actor or current_actor()
        target = {CommandAction.STOP: DesiredState.STOPPED, CommandAction.PAUSE: DesiredState.PAUSED}.get(
            action, DesiredState.RUNNING)
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)
            check_visible(actor, consumer)
            before = {"desired_state": consumer.desired_state.value, "generation": consumer.generation}
            refuse_if_stopped(action, consumer.desired_state)
            # pause, resume and the start of a paused consumer keep the workers: same generation, same processes
            keeps_workers = action != CommandAction.RESTART and {consumer.desired_state, target} <= LIVE_STATES
            # restart always means new processes (and clears a FATAL crash loop); start/stop are idempotent
            changed_state = action == CommandAction.RESTART or consumer.desired_state != target
            if changed_state:
                consumer.desired_state = target
                if not keeps_workers:
                    consumer.generation += 1
                consumer = self.reload(session, consumer_id)
            if keeps_workers and (changed_state or action in PAUSE_ACTIONS):
                self._announce_pause(consumer)  # a repeated pause/resume re-sends: heals a worker that missed it
            after = {"desired_state": consumer.desired_state.value, "generation": consumer.generation}
            audit.record(session, actor, audit_action, target_type="consumer", target_id=consumer_id,
                         before=before, after=after)
        # published even when nothing changed: a harmless wake-up that makes the supervisor reconcile now
        self.publisher.publish(consumer.id, consumer.generation, action)
        return ControlResult(consumer, action, changed_state, kept_workers=keeps_workers)
