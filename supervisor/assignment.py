"""Which replicas this supervisor runs: the slot leases of supervisor/slots.py applied to the replica machines.

Each tick: renew the leases (a lease lost or lapsed stops its worker, fenced: nothing more is written for it),
claim or hand over slots every balance interval (and at once after a command), configure every replica we hold
(or still stop), and settle what has stopped (write STOPPED, release the slot; a handover keeps its flag until
the next holder claims it). A slot just claimed waits until the previous worker's Redis lease is gone, so its new
worker never runs next to the old one, not even for a moment on the same host.
"""
from __future__ import annotations

import logging
import os
import socket
import time

import sqlalchemy.exc

from schema.ratelimited_log import Outages
from schema.states import ProcessState
from supervisor.desired import write_status
from supervisor.replica import Replica
from supervisor.slots import Lost, SlotTable

log = logging.getLogger("kcm.supervisor")

# a previous worker's lease, once seen held, must stay released this long before the new worker is spawned: the
# old process releases its lease a moment before it exits
LEASE_SETTLE_SECONDS = 1.0


class Assignment:
    """Mixed into ``supervisor.daemon.Supervisor``: its replicas, consumers, settings, Redis and session factory."""

    def _setup_slots(self) -> None:
        self.slots: SlotTable | None = None
        if self.session_factory is not None:
            self.slots = SlotTable(self.session_factory.kw["bind"], supervisor_id=self.settings.supervisor_id,
                                   host=socket.gethostname(), pid=os.getpid(), labels=self.settings.supervisor_labels,
                                   max_workers=self.settings.max_workers, ttl=self.settings.supervisor_lease_ttl)
        self.registered = False
        self.balance_seconds = min(1.0, self.settings.supervisor_lease_ttl / 4)
        self._next_balance = 0.0
        self._lease_free_since: dict[tuple[str, int], float | None] = {}  # seen held: None, or free since then
        self._slot_written: dict[tuple[str, int], tuple[int, ProcessState]] = {}
        self._noted: dict[tuple[str, int], tuple[int, str]] = {}  # unplaced notes we wrote: slot epoch, labels
        self._noted_for: float | None = None
        self._db_outages = Outages(log, "DatabaseUnavailable")

    def _db(self, what: str, fn, *args, default=None):
        try:
            result = fn(*args)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            self._db_outages[what].failed(str(exc).splitlines()[0])
            return default
        self._db_outages[what].recovered()
        return result

    # ------------------------------------------------------------------ leases
    def register(self) -> None:
        """Raises ``AnotherSupervisor`` (SQLite); a database that is down is retried on the next tick."""
        if self.slots is None or self.registered:
            return
        try:
            self.slots.register()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            self._db_outages["registering"].failed(str(exc).splitlines()[0])
            return
        self._db_outages["registering"].recovered()
        self.registered = True
        log.info("SupervisorRegistered id=%s labels=%s max_workers=%s lease_ttl=%s adopted=%s",
                 self.settings.supervisor_id, self.settings.supervisor_labels, self.settings.max_workers,
                 self.settings.supervisor_lease_ttl, len(self.slots.held))
        if self.slots.held:
            self.reconcile({cid for cid, _n in self.slots.held})

    def coordinate(self, *, balance_now: bool = False) -> None:
        if self.slots is None:
            return
        self.register()
        if not self.registered:
            self._lapse()
            self._apply()
            return
        renewing = self._db_outages["renewing slot leases"]
        try:
            lost = self.slots.renew()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            renewing.failed(str(exc).splitlines()[0])
            lost = self.slots.lapsed()
            self._next_balance = max(self._next_balance, time.monotonic() + 2 * self.balance_seconds)
        else:
            if renewing.failing:  # the database is back: let the others renew first, or we would take everything
                self._next_balance = time.monotonic() + 2 * self.balance_seconds
            renewing.recovered()
        for item in lost:
            self._on_lost(item)
        now = time.monotonic()
        if not self.stopping and not renewing.failing and (balance_now or now >= self._next_balance):
            self._next_balance = now + self.balance_seconds
            claimed, handover = self._db("balancing slots", self.slots.balance, default=([], None))
            if claimed:
                log.info("SlotsClaimed count=%s share=%s held=%s slots=%s", len(claimed), self.slots.share,
                         len(self.slots.held), " ".join(f"{c}/{n}@{self.slots.held[(c, n)].epoch}" for c, n in claimed))
                self.reconcile({cid for cid, _n in claimed})  # what we now run, as the database has it now
            if handover is not None:
                log.info("HandoverStarted consumer=%s replica=%s share=%s held=%s", *handover, self.slots.share,
                         len(self.slots.held))
            self._note_unplaced()
        self._apply()

    def _note_unplaced(self) -> None:
        """A free slot no live supervisor may run says so in its state hash (UNKNOWN, ``unplaced`` = the labels it
        needs), at the slot's epoch: its next holder writes at epoch + 1 over it. A note no longer true goes."""
        if self._noted_for != self._redis_up_since:  # Redis came back (maybe empty): every note again
            self._noted.clear()
            self._noted_for = self._redis_up_since
        notes = {key: (epoch, ",".join(f"{k}={v}" for k, v in sorted((placement or {}).items())))
                 for key, (epoch, placement) in self.slots.unplaced.items()}
        fresh = {key: note for key, note in notes.items() if self._noted.get(key) != note}
        writes = {key: (epoch, self._unplaced_fields(key, labels)) for key, (epoch, labels) in fresh.items()}
        if fresh and self._redis("noting unplaced slots", self.redis.publish_states, writes,
                                 default=False) is not False:
            self._noted.update(fresh)
            for key, (epoch, labels) in fresh.items():
                log.info("SlotUnplaced consumer=%s replica=%s epoch=%s placement=%s: no live supervisor carries "
                         "these labels", *key, epoch, labels)
        stale = {key: epoch for key, (epoch, _labels) in self._noted.items() if key not in notes}
        if stale and self._redis("dropping unplaced notes", self.redis.delete_fenced, stale,
                                 default=False) is not False:
            for key in stale:
                del self._noted[key]
            stopped = {cid: c for cid, _n in stale if (c := self.consumers.get(cid)) is not None and not c.running}
            self._placeheld.difference_update(stopped)  # the note stood where its STOPPED placeholder goes
            self._placehold(stopped, {})

    def _unplaced_fields(self, key: tuple[str, int], labels: str) -> dict[str, str]:
        consumer = self.consumers.get(key[0])
        generation = str(consumer.generation) if consumer is not None else ""
        return {"state": ProcessState.UNKNOWN.value, "pid": "", "generation": generation, "restarts": "0", "retries": "0", "backoff_delay": "0", "last_error": "", "degraded": "",
                "started_at": "", "unplaced": labels}

    def _lapse(self) -> None:
        for item in self.slots.lapsed():
            self._on_lost(item)

    def _on_lost(self, item: Lost) -> None:
        """Not ours any more: stop the worker (SIGTERM within the TTL) and write nothing more for it."""
        replica = self.replicas.get(item.key)
        log.warning("SlotLost consumer=%s replica=%s epoch=%s reason=%s pid=%s", *item.key, item.epoch,
                    "slot-deleted" if item.gone else "lapsed-database-unreachable" if item.lapsed
                    else "expired-or-taken-over",
                    replica.proc.pid if replica is not None and replica.proc is not None else "")
        self._slot_written.pop(item.key, None)
        if item.gone:  # slot rows go only with their consumer (ON DELETE CASCADE): it was deleted
            self.consumers.pop(item.key[0], None)
        elif replica is not None:
            replica.fenced = True

    # ------------------------------------------------------------------ replicas from leases
    def _apply(self) -> None:
        """Configure each replica we hold (or still have a process for) from the desired state and the lease."""
        held = self.slots.held if self.slots is not None else {}
        keys = set(held) | set(self.replicas)
        starting = []
        for key in keys:
            cid, n = key
            consumer = self.consumers.get(cid)
            spec = consumer.specs[n] if consumer is not None and n < consumer.replicas else None
            replica = self.replicas.get(key)
            if replica is not None and replica.fenced and replica.proc is None:
                replica = None  # the old life of a slot claimed again: it is over, a new one begins
            if replica is None:
                if spec is None or not consumer.running or self.stopping or key not in held:
                    self.replicas.pop(key, None)
                    continue
                replica = self.replicas[key] = Replica(cid, n, self.timings)
            lease = self.slots.valid(key) if self.slots is not None else None
            if key in held:
                replica.epoch = held[key].epoch
            run = (spec is not None and consumer.running and not self.stopping and not replica.fenced
                   and (self.slots is None or (lease is not None and not lease.handover)))
            if run and replica.proc is None and replica.machine.state == ProcessState.STOPPED:
                starting.append(key)
            generation = consumer.generation if consumer is not None else replica.machine.desired_generation
            replica.want(spec, running=run, generation=generation)
        for key in self._lease_gate(starting):
            replica = self.replicas[key]
            replica.want(replica.spec, running=False, generation=replica.machine.desired_generation)

    def _lease_gate(self, keys: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """The replicas about to spawn whose previous worker (any host) still holds the Redis lease: wait."""
        for key in list(self._lease_free_since):
            if key not in keys:
                del self._lease_free_since[key]
        if not keys:
            return set()
        busy = self._redis("checking worker leases", self.redis.leases_held, keys, default=None)
        if busy is None:
            return set()  # Redis down: the machine waits in WAITING, the worker for its lease
        now = time.monotonic()
        waiting = set()
        for key in keys:
            if key in busy:
                if key not in self._lease_free_since:
                    log.info("WaitingForPreviousWorker consumer=%s replica=%s", *key)
                self._lease_free_since[key] = None
                waiting.add(key)
            elif key in self._lease_free_since:
                since = self._lease_free_since[key]
                if since is None:
                    self._lease_free_since[key] = now
                    waiting.add(key)
                elif now - since < LEASE_SETTLE_SECONDS:
                    waiting.add(key)
                else:
                    del self._lease_free_since[key]
        return waiting

    def _wanted(self, key: tuple[str, int]) -> bool:
        """The desired state wants this replica to run here (lease aside)."""
        consumer = self.consumers.get(key[0])
        return consumer is not None and consumer.running and key[1] < consumer.replicas and not self.stopping

    def _settle(self) -> None:
        """Drop replicas that are done: release a stopped slot we hold (STOPPED written first), forget one we lost."""
        gone_states: dict[tuple[str, int], int] = {}
        held = self.slots.held if self.slots is not None else {}
        for key in set(self.replicas) | set(held):
            replica = self.replicas.get(key)
            if replica is not None and replica.proc is not None:
                continue
            if replica is not None and replica.fenced:  # its worker is gone: forget it, write nothing
                del self.replicas[key]
                self.published.pop(key, None)
                log.info("ReplicaRemoved consumer=%s replica=%s reason=fenced", *key)
                replica = None
            lease = held.get(key)
            if lease is not None:
                if self._wanted(key) and not lease.handover:
                    continue  # ours and wanted: it runs, or waits for the previous worker's lease
                if replica is not None and replica.machine.state != ProcessState.STOPPED:
                    continue  # the next tick moves it to STOPPED
                if not self._release(key, lease, replica):
                    continue
            elif replica is None:
                continue
            elif self.slots is None and not (replica.retired and replica.machine.state == ProcessState.STOPPED):
                continue  # no database (unit tests): only the retired go
            if replica is None:
                continue
            if replica.retired:
                gone_states[key] = replica.epoch or 0
            del self.replicas[key]
            self.published.pop(key, None)
            self._slot_written.pop(key, None)
            log.info("ReplicaRemoved consumer=%s replica=%s", *key)
        if gone_states:
            self._redis("deleting states", self.redis.delete_fenced, gone_states)
            deleted = {cid for cid, _n in gone_states if cid not in self.consumers}
            self._purge_dead_letters({cid for cid in deleted if not any(k[0] == cid for k in self.replicas)})

    def _release(self, key, lease, replica: Replica | None) -> bool:
        """Write STOPPED (fenced) and give the slot up; False while the database cannot be reached."""
        retired = replica is not None and replica.retired
        if not retired:
            written = self._db("writing a replica state", lambda: write_status(
                self.session_factory, key[0], key[1], holder=self.settings.supervisor_id, epoch=lease.epoch,
                state=ProcessState.STOPPED))
            if written is None:
                return False
            self._log_status(key, written)
        handover = lease.handover and not self.stopping
        if self._db("releasing a slot", lambda: self.slots.release(key, handover=handover)) is None:
            return False
        log.info("SlotReleased consumer=%s replica=%s epoch=%s handover=%s", *key, lease.epoch, handover)
        return True

    # ------------------------------------------------------------------ fenced writes
    def _write_slot_states(self) -> None:
        if self.slots is None:
            return
        for key, replica in self.replicas.items():
            lease = self.slots.valid(key)
            if lease is None or replica.retired or replica.fenced or key[0] not in self.consumers:
                continue
            state = replica.status_state
            if self._slot_written.get(key) == (lease.epoch, state):
                continue
            written = self._db("writing a replica state", lambda k=key, s=state, e=lease.epoch: write_status(
                self.session_factory, k[0], k[1], holder=self.settings.supervisor_id, epoch=e, state=s))
            if written is None:
                return  # the database is down: everything again on the next tick
            self._slot_written[key] = (lease.epoch, state)
            self._log_status(key, written)

    def _log_status(self, key, written) -> None:
        if not written.accepted:
            log.warning("StatusRefused consumer=%s replica=%s: the slot's epoch moved (fenced)", *key)
        elif written.after is not None:
            log.info("ConsumerStatus consumer=%s from=%s to=%s", key[0], written.before.value, written.after.value)

    def publishable(self) -> dict[tuple[str, int], Replica]:
        """The replicas whose state hash we write: ours under a lease that cannot have expired yet."""
        if self.slots is None:
            return {k: r for k, r in self.replicas.items() if not r.fenced}
        return {k: r for k, r in self.replicas.items() if not r.fenced and self.slots.valid(k) is not None}
