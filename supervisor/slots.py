"""Several supervisors share the replica slots through PostgreSQL row leases, fenced by an epoch per slot.

A slot is ``(consumer_id, replica)`` of a consumer whose desired state is running or paused (one row in
``kcm_replica_slots``). A supervisor registers and heartbeats its ``kcm_supervisors`` row, renews every lease it
holds in one UPDATE per tick, claims free or expired slots with ``SELECT ... FOR UPDATE SKIP LOCKED`` (epoch + 1:
the fencing token), up to its share (supervisor/shares.py: per placement, capped), those the fewest others may run
first, and hands excess slots over one at a time (globally, while a handover is in flight no other starts), only
ones another live supervisor below its share may run. Lease expiry is database time (``now()``); locally a lease
is trusted only until the monotonic time the renewing statement was sent + TTL, never later than the database's
expiry.

On SQLite only one supervisor may run: registering refuses while another live supervisor's row exists.
docs/runtime.md, "Several supervisors", has the protocol.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from schema.models import Consumer, ReplicaSlot, SupervisorRow
from schema.placement import matches
from schema.states import DesiredState
from supervisor.shares import Capacity, plan, whole

SUPERVISORS = SupervisorRow.__table__
SLOTS = ReplicaSlot.__table__
CONSUMERS = Consumer.__table__
RUNNING_STATES = (DesiredState.RUNNING.value, DesiredState.PAUSED.value)  # a paused worker keeps its process
HANDOVER_LOCK = 0x6B636D48  # pg_advisory_xact_lock key: one handover starts at a time, cluster-wide
DEAD_ROW_SECONDS = 3600.0  # a supervisor row this long past its lease is deleted (its slots were taken long ago)

Key = tuple[str, int]


class AnotherSupervisor(RuntimeError):
    """SQLite: a second supervisor may not run next to a live one."""


@dataclass
class Held:
    epoch: int
    valid_until: float  # monotonic: the lease cannot have expired in the database before this
    handover: bool = False  # being warm-stopped for another supervisor


@dataclass(frozen=True)
class Lost:
    key: Key
    epoch: int
    gone: bool  # the slot row itself is gone (consumer deleted): no one else holds it
    lapsed: bool = False  # the database could not be reached to renew it before it may have expired


def _key(row) -> Key:
    return (str(row.consumer_id), int(row.replica))


def _running(consumers=CONSUMERS):
    return consumers.c.desired_state.in_(RUNNING_STATES)


class SlotTable:
    def __init__(self, engine: sa.Engine, *, supervisor_id: str, host: str, pid: int, labels: dict[str, str],
                 max_workers: int, ttl: float, clock=time.monotonic):
        self.engine = engine
        self.pg = engine.dialect.name == "postgresql"
        self.me = supervisor_id
        self.host = host
        self.pid = pid
        self.labels = labels or {}
        self.max_workers = max_workers
        self.ttl = ttl
        self.clock = clock
        self.held: dict[Key, Held] = {}
        self.draining = False
        self.share = 0
        self.shares: dict[str, int] = {}  # every live supervisor's, as of the last balance
        self.live: dict[str, Capacity] = {}
        self.unplaced: dict[Key, tuple[int, dict | None]] = {}  # free slots no live supervisor may run: epoch, placement

    # ------------------------------------------------------------------ database time
    def _now(self):
        if self.pg:
            return sa.func.now()
        return sa.literal(datetime.now(UTC), sa.DateTime(timezone=True))  # SQLite: one supervisor, its own clock

    def _in(self, seconds: float):
        if self.pg:
            return sa.func.now() + sa.literal(timedelta(seconds=seconds), sa.Interval())
        return sa.literal(datetime.now(UTC) + timedelta(seconds=seconds), sa.DateTime(timezone=True))

    def _insert(self):
        return (postgresql if self.pg else sqlite).insert

    # ------------------------------------------------------------------ registration
    def register(self) -> None:
        """Write our row; our slots of a previous life are taken over again (epoch + 1 fences that life)."""
        started = self.clock()
        with self.engine.begin() as conn:
            values = {"host": self.host, "pid": self.pid, "labels": self.labels or None,
                      "max_workers": self.max_workers, "draining": False, "started_at": self._now(),
                      "heartbeat_at": self._now(), "lease_expires_at": self._in(self.ttl)}
            if self.pg:
                stmt = self._insert()(SUPERVISORS).values(id=self.me, **values)
                conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=values))
            else:
                conn.execute(SUPERVISORS.delete().where(SUPERVISORS.c.id == self.me))
                live = sa.select(SUPERVISORS.c.id).where(SUPERVISORS.c.lease_expires_at > self._now())
                columns = [sa.literal(self.me, SUPERVISORS.c.id.type)] + [
                    v if isinstance(v, sa.ColumnElement) else sa.literal(v, SUPERVISORS.c[name].type)
                    for name, v in values.items()]
                # one statement, so atomic: our row goes in only while no other live supervisor has one
                inserted = conn.execute(SUPERVISORS.insert().from_select(
                    ["id", *values], sa.select(*columns).where(~live.exists())))
                if inserted.rowcount != 1:
                    other = conn.execute(live.limit(1)).scalar()
                    raise AnotherSupervisor(
                        f"supervisor {other} is running on this SQLite database and only one may: stop it, or use "
                        f"PostgreSQL (KCM_DATABASE_URL) for several; a killed one's registration expires after "
                        f"KCM_SUPERVISOR_LEASE_TTL ({self.ttl:g} s)")
            rows = conn.execute(SLOTS.update().where(SLOTS.c.holder == self.me).values(
                epoch=SLOTS.c.epoch + 1, lease_expires_at=self._in(self.ttl), handover=False)
                .returning(SLOTS.c.consumer_id, SLOTS.c.replica, SLOTS.c.epoch)).all()
        self.held = {_key(r): Held(int(r.epoch), started + self.ttl) for r in rows}

    def withdraw(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(SLOTS.update().where(SLOTS.c.holder == self.me).values(
                holder=None, lease_expires_at=self._now(), handover=False))
            conn.execute(SUPERVISORS.delete().where(SUPERVISORS.c.id == self.me))
        self.held.clear()

    # ------------------------------------------------------------------ every tick
    def renew(self) -> list[Lost]:
        """Heartbeat our row and renew every unexpired lease we hold (one UPDATE); what we no longer hold is lost.
        A database error propagates: the caller then drops the leases whose local validity ran out (``lapsed``)."""
        started = self.clock()
        with self.engine.begin() as conn:
            beat = conn.execute(SUPERVISORS.update().where(SUPERVISORS.c.id == self.me).values(
                heartbeat_at=self._now(), lease_expires_at=self._in(self.ttl), draining=self.draining))
            if beat.rowcount == 0:  # deleted as dead by another (we were frozen for an hour): register again
                self._reinsert(conn)
            rows = conn.execute(SLOTS.update().where(
                SLOTS.c.holder == self.me, SLOTS.c.lease_expires_at > self._now()).values(
                lease_expires_at=self._in(self.ttl)).returning(SLOTS.c.consumer_id, SLOTS.c.replica,
                                                               SLOTS.c.epoch)).all()
            renewed = {_key(r): int(r.epoch) for r in rows}
            missing = [k for k, h in self.held.items() if renewed.get(k) != h.epoch]
            present = self._present(conn, missing)
        lost = []
        for key, held in list(self.held.items()):
            if renewed.get(key) == held.epoch:
                held.valid_until = started + self.ttl
            else:
                lost.append(Lost(key, held.epoch, gone=key not in present))
                del self.held[key]
        return lost

    def _reinsert(self, conn) -> None:
        conn.execute(SUPERVISORS.insert().values(
            id=self.me, host=self.host, pid=self.pid, labels=self.labels or None, max_workers=self.max_workers,
            draining=self.draining, started_at=self._now(), heartbeat_at=self._now(),
            lease_expires_at=self._in(self.ttl)))

    def _present(self, conn, keys: list[Key]) -> set[Key]:
        if not keys:
            return set()
        ids = {uuid.UUID(cid) for cid, _n in keys}
        rows = conn.execute(sa.select(SLOTS.c.consumer_id, SLOTS.c.replica).where(SLOTS.c.consumer_id.in_(ids)))
        return {_key(r) for r in rows} & set(keys)

    def lapsed(self) -> list[Lost]:
        """Leases whose local validity ran out while the database could not be reached: no longer ours."""
        now = self.clock()
        lost = [Lost(k, h.epoch, gone=False, lapsed=True) for k, h in self.held.items() if now >= h.valid_until]
        for item in lost:
            del self.held[item.key]
        return lost

    def valid(self, key: Key) -> Held | None:
        """The lease if we hold it and it cannot have expired yet: only then may we write for the slot."""
        held = self.held.get(key)
        return held if held is not None and self.clock() < held.valid_until else None

    # ------------------------------------------------------------------ slots of the desired state
    def ensure(self, consumers: list[tuple[str, int]]) -> None:
        """A slot row for each replica of these running consumers (``(consumer_id, replicas)``)."""
        wanted = {(uuid.UUID(cid), n) for cid, count in consumers for n in range(count)}
        if not wanted:
            return
        with self.engine.begin() as conn:
            # only the missing ones: an INSERT that meets an existing row would wait on its holder's transaction
            existing = set(conn.execute(sa.select(SLOTS.c.consumer_id, SLOTS.c.replica).where(
                SLOTS.c.consumer_id.in_({cid for cid, _n in wanted}))).tuples())
            rows = [{"consumer_id": cid, "replica": n} for cid, n in sorted(wanted - existing)]
            for start in range(0, len(rows), 500):
                stmt = self._insert()(SLOTS).values(rows[start:start + 500])
                conn.execute(stmt.on_conflict_do_nothing(index_elements=["consumer_id", "replica"]))

    def cleanup(self) -> None:
        """The full pass: consumers no longer running whose slots nobody holds read INACTIVE (their holder, if any,
        writes that itself), and long-dead supervisor rows go."""
        with self.engine.begin() as conn:
            held = sa.select(SLOTS.c.consumer_id).where(
                SLOTS.c.consumer_id == CONSUMERS.c.id, SLOTS.c.holder.is_not(None),
                SLOTS.c.lease_expires_at > self._now())
            conn.execute(CONSUMERS.update().where(
                ~_running(), CONSUMERS.c.status != "INACTIVE", ~held.exists()).values(
                status="INACTIVE", updated_at=CONSUMERS.c.updated_at))
            conn.execute(SUPERVISORS.delete().where(SUPERVISORS.c.lease_expires_at < self._in(-DEAD_ROW_SECONDS)))

    # ------------------------------------------------------------------ balance
    def _free(self):
        return sa.or_(SLOTS.c.holder.is_(None), SLOTS.c.lease_expires_at.is_(None),
                      SLOTS.c.lease_expires_at <= self._now())

    def _plan(self, conn) -> list:
        """The live supervisors (``self.live``), every one's share (``self.shares``, supervisor/shares.py) and ours;
        returns the slot groups ``(placement, slots, free slots)`` of running consumers."""
        rows = conn.execute(sa.select(SUPERVISORS.c.id, SUPERVISORS.c.labels, SUPERVISORS.c.max_workers).where(
            SUPERVISORS.c.lease_expires_at > self._now(), SUPERVISORS.c.draining == sa.false())).all()
        self.live = {r.id: Capacity(r.labels, int(r.max_workers or 0)) for r in rows}
        if not self.draining:
            self.live[self.me] = Capacity(self.labels, self.max_workers)  # as we are now, whatever our row says
        groups = conn.execute(sa.select(CONSUMERS.c.placement, sa.func.count(), sa.func.count().filter(self._free()))
                              .select_from(SLOTS.join(CONSUMERS, CONSUMERS.c.id == SLOTS.c.consumer_id))
                              .where(_running(), SLOTS.c.replica < CONSUMERS.c.replicas)
                              .group_by(CONSUMERS.c.placement)).all()
        planned = plan(self.live, [(placement, count) for placement, count, _free in groups])
        self.shares = {sid: whole(amount, self.live[sid].max_workers) for sid, amount in planned.items()}
        self.share = 0 if self.draining else self.shares.get(self.me, 0)
        return groups

    def compute_share(self, conn) -> int:
        """Our share of the slots (supervisor/shares.py), capped by KCM_MAX_WORKERS."""
        self._plan(conn)
        return self.share

    def _runners(self, placement) -> list[str]:
        return [sid for sid, cap in self.live.items() if matches(placement, cap.labels)]

    def balance(self) -> tuple[list[Key], Key | None]:
        """Claim free or expired slots up to our share; when over it (or when a free slot only we may run waits
        while we run one another supervisor with room may run), start one handover. Also notes ``unplaced``:
        the free slots no live supervisor may run. Returns what was claimed and the slot to hand over (None)."""
        started = self.clock()
        with self.engine.begin() as conn:
            groups = self._plan(conn)
            free = []
            if any(n and (not self._runners(p) or matches(p, self.labels)) for p, _count, n in groups):
                free = conn.execute(
                    sa.select(SLOTS.c.consumer_id, SLOTS.c.replica, SLOTS.c.epoch, CONSUMERS.c.placement)
                    .select_from(SLOTS.join(CONSUMERS, CONSUMERS.c.id == SLOTS.c.consumer_id))
                    .where(self._free(), _running(), SLOTS.c.replica < CONSUMERS.c.replicas)).all()
            self.unplaced = {_key(r): (int(r.epoch), r.placement) for r in free if not self._runners(r.placement)}
            retiring, misplaced, placements = self._doomed(conn)
            keeping = [k for k, h in self.held.items() if not h.handover and k not in retiring]
            misplaced = [k for k in misplaced if k in keeping]
            want = self.share - len(keeping)
            if not any(h.handover for h in self.held.values()):
                if misplaced:
                    return [], self._start_handover(conn, misplaced)
                if want < 0 or (want == 0 and free):
                    rooms = self._rooms(conn)
                    movable = [k for k in keeping if k in placements and self._has_room(placements[k], rooms)]
                    stranded = any(matches(r.placement, self.labels) and not self._has_room(r.placement, rooms)
                                   for r in free)
                    if want < 0 or stranded:
                        return [], self._start_handover(conn, movable)
            if self.max_workers:  # a handed-over or retiring slot's worker still runs: the cap counts it
                want = min(want, self.max_workers - len(self.held))
            if want > 0:
                return self._claim(conn, want, started), None
        return [], None

    def _rooms(self, conn) -> dict[str, int]:
        """How many more slots each other live supervisor should run (its share less what it holds)."""
        held = dict(conn.execute(sa.select(SLOTS.c.holder, sa.func.count()).where(
            SLOTS.c.holder.is_not(None), SLOTS.c.lease_expires_at > self._now()).group_by(SLOTS.c.holder)).all())
        return {sid: share - held.get(sid, 0) for sid, share in self.shares.items() if sid != self.me}

    def _has_room(self, placement, rooms: dict[str, int]) -> bool:
        """Another live supervisor below its share may run this placement: a handover of it will be claimed."""
        return any(rooms.get(sid, 0) > 0 for sid in self._runners(placement))

    def _doomed(self, conn) -> tuple[set[Key], list[Key], dict[Key, dict | None]]:
        """Of the slots we hold: those being stopped anyway (consumer stopped, replicas shrank; not counted in the
        share), those whose consumer's placement (changed since) our labels no longer satisfy, and every one's
        placement."""
        if not self.held:
            return set(), [], {}
        rows = conn.execute(sa.select(SLOTS.c.consumer_id, SLOTS.c.replica, CONSUMERS.c.placement,
                                      CONSUMERS.c.replicas, CONSUMERS.c.desired_state)
                            .select_from(SLOTS.join(CONSUMERS, CONSUMERS.c.id == SLOTS.c.consumer_id))
                            .where(SLOTS.c.holder == self.me)).all()
        retiring = {_key(r) for r in rows if r.desired_state not in RUNNING_STATES or r.replica >= r.replicas}
        misplaced = sorted(k for r in rows if (k := _key(r)) not in retiring and not matches(r.placement, self.labels))
        return retiring, misplaced, {_key(r): r.placement for r in rows}

    def _claim(self, conn, want: int, started: float) -> list[Key]:
        """The free slots we may run, those the fewest live supervisors may run first (so slots others may run too
        do not crowd out the ones only we may run), then handed-over ones."""
        query = (sa.select(SLOTS.c.consumer_id, SLOTS.c.replica, SLOTS.c.epoch, SLOTS.c.handover, CONSUMERS.c.placement)
                 .select_from(SLOTS.join(CONSUMERS, CONSUMERS.c.id == SLOTS.c.consumer_id))
                 .where(self._free(), _running(), SLOTS.c.replica < CONSUMERS.c.replicas))
        if self.pg:
            query = query.with_for_update(of=SLOTS, skip_locked=True)
        # not one still in held; one of ours whose lease ran out locally and was dropped is claimed anew, epoch + 1
        rows = [r for r in conn.execute(query).all() if matches(r.placement, self.labels) and _key(r) not in self.held]
        rows.sort(key=lambda r: (len(self._runners(r.placement)), not r.handover, _key(r)))
        claimed = []
        for row in rows:
            if len(claimed) >= want:
                break
            key = _key(row)
            done = conn.execute(SLOTS.update().where(
                SLOTS.c.consumer_id == row.consumer_id, SLOTS.c.replica == row.replica,
                SLOTS.c.epoch == row.epoch).values(
                holder=self.me, epoch=row.epoch + 1, lease_expires_at=self._in(self.ttl), handover=False))
            if done.rowcount == 1:
                self.held[key] = Held(int(row.epoch) + 1, started + self.ttl)
                claimed.append(key)
        return claimed

    def _start_handover(self, conn, candidates: list[Key]) -> Key | None:
        if not candidates:
            return None
        if self.pg:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(HANDOVER_LOCK)))
        in_flight = (sa.select(SLOTS.c.replica).select_from(SLOTS.join(CONSUMERS, CONSUMERS.c.id == SLOTS.c.consumer_id))
                     .where(SLOTS.c.handover == sa.true(), _running(), SLOTS.c.replica < CONSUMERS.c.replicas,
                            # a handover nobody claimed for a TTL (nobody may run it here) blocks no longer
                            SLOTS.c.lease_expires_at > self._in(-self.ttl)))
        if conn.execute(in_flight.limit(1)).first():
            return None  # one handover at a time: wait until the other one has been claimed
        key = max(candidates)
        held = self.held[key]
        done = conn.execute(self._ours(key, held.epoch).values(handover=True))
        if done.rowcount != 1:
            return None
        held.handover = True
        return key

    def release(self, key: Key, *, handover: bool) -> bool:
        """Give the slot up (its worker has exited): free at once; ``handover`` keeps the flag until it is claimed."""
        held = self.held.get(key)
        if held is None:
            return False
        with self.engine.begin() as conn:
            done = conn.execute(self._ours(key, held.epoch).values(
                holder=None, lease_expires_at=self._now(), handover=handover))
        del self.held[key]  # only once the database has it: a failed release is renewed (and retried) as ours
        return done.rowcount == 1

    def _ours(self, key: Key, epoch: int):
        cid, n = key
        return SLOTS.update().where(SLOTS.c.consumer_id == uuid.UUID(cid), SLOTS.c.replica == n,
                                    SLOTS.c.holder == self.me, SLOTS.c.epoch == epoch)

    # ------------------------------------------------------------------ views
    def holders(self) -> dict[Key, tuple[str | None, int]]:
        """Every slot's holder and epoch (tests, GET /supervisors/ reads its own)."""
        with self.engine.connect() as conn:
            return {_key(r): (r.holder, int(r.epoch)) for r in conn.execute(
                sa.select(SLOTS.c.consumer_id, SLOTS.c.replica, SLOTS.c.holder, SLOTS.c.epoch))}
