"""The supervisor loop: reconcile desired state with processes, tick every replica, publish what it sees.

Reconcile every consumer from the database on start and every ``KCM_RECONCILE_INTERVAL`` seconds, so a lost
command or a supervisor restart heals itself; a command in the Redis stream (a wake-up only) reconciles just the
consumer it names, so the work per command does not grow with the consumers stored. Only the replica slots this
supervisor leases (supervisor/slots.py, coordinated in supervisor/assignment.py) get a worker.
"""
from __future__ import annotations

import logging
import signal
import time
import uuid

import redis
import sqlalchemy.exc

from schema.dead_letter_store import DeadLetterStore
from schema.exits import CONNECT_TIMEOUT, EXIT_SUPERVISOR_RUNNING, REDIS_SOCKET_TIMEOUT
from schema.ratelimited_log import Outages
from schema.replica_machine import Timings
from schema.settings import Settings
from supervisor.assignment import Assignment
from supervisor.desired import DesiredConsumer, load_desired
from supervisor.redis_state import RedisState
from supervisor.replica import Replica
from supervisor.slots import AnotherSupervisor

# every state hash is rewritten this often even when unchanged, so a Redis that lost its data heals; changes
# are published on the tick they happen (rewriting hundreds of unchanged hashes every reconcile costs CPU)
FULL_REPUBLISH_SECONDS = 60.0

log = logging.getLogger("kcm.supervisor")

FAILED = object()  # what ``Supervisor._redis`` returns by default when the call failed
ANY_EPOCH = 2**62  # a fenced delete that any holder's hash yields to: the consumer (or replica) is gone


def timings_from(settings: Settings) -> Timings:
    ttl = settings.heartbeat_interval * 3
    lease_wait = ttl + 1
    return Timings(
        startsecs=settings.startsecs,
        startretries=settings.startretries,
        backoff_max=settings.backoff_max,
        stopwaitsecs=settings.stopwaitsecs,
        backoff_base=min(1.0, settings.backoff_max),
        # a worker may wait for a dead predecessor's lease, then for Kafka, before it is ready
        start_timeout=settings.startsecs + lease_wait + CONNECT_TIMEOUT + 5,
        stable_secs=max(10.0, settings.startsecs * 10),
        heartbeat_ttl=ttl,
        # after Redis is back a worker's heartbeat may still be blocked on its socket timeout: allow for it
        liveness_span=ttl + REDIS_SOCKET_TIMEOUT,
        hang_confirm_secs=ttl,
        hang_hard_secs=max(30.0, ttl * 10),
    )


class Supervisor(Assignment):
    def __init__(self, settings: Settings, session_factory, client: redis.Redis):
        self.settings = settings
        self.session_factory = session_factory
        self.redis = RedisState(client, supervisor_id=settings.supervisor_id,
                                heartbeat_interval=settings.heartbeat_interval)
        self.timings = timings_from(settings)
        self.replicas: dict[tuple[str, int], Replica] = {}
        self.consumers: dict[str, DesiredConsumer] = {}
        self.published: dict[tuple[str, int], dict[str, str]] = {}
        self.stopping = False
        self.tick_seconds = min(0.5, max(0.05, settings.heartbeat_interval / 2))
        self._next_reconcile = 0.0
        self._next_beat = 0.0
        self._next_republish = 0.0
        self._swept = False
        self._redis_up_since: float | None = None  # our Redis calls have all succeeded since then
        self._redis_outages = Outages(log, "RedisUnavailable")
        self._commanded: set[str] = set()  # consumer ids the last commands named
        self._placeheld: set[str] = set()  # stopped consumers whose STOPPED placeholder exists
        self._placeheld_for: float | None = None
        self._setup_slots()

    def _redis(self, what: str, fn, *args, default=FAILED):
        """``fn(*args)``; a Redis that is down gives ``default`` and is logged rate-limited (the first failure,
        a summary a minute, the recovery: ``schema.ratelimited_log``). Every Redis call of the loop goes through
        here (the dead-letter purge logs its own ``DeadLetterPurgeFailed``), so the loop survives any Redis
        outage, and the span since the last failure is what liveness is judged over."""
        try:
            result = fn(*args)
        except redis.RedisError as exc:
            self._redis_outages[what].failed(exc)
            if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):  # not a refused command: down
                self._redis_up_since = None
            return default
        self._redis_outages[what].recovered()
        if self._redis_up_since is None:
            self._redis_up_since = time.monotonic()
            self._next_republish = 0.0  # Redis may have come back empty: every state hash again
        return result

    def redis_up_for(self) -> float | None:
        """Seconds our Redis calls have succeeded without a gap; None while Redis is down."""
        return None if self._redis_up_since is None else time.monotonic() - self._redis_up_since

    # ------------------------------------------------------------------ life
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)

    def _on_stop_signal(self, signum, _frame) -> None:
        if self.stopping:  # second signal: no more waiting
            log.warning("ColdStop: killing every worker now")
            for replica in self.replicas.values():
                if replica.proc is not None:
                    replica.proc.kill()
            raise SystemExit(1)
        log.info("SupervisorStopping signal=%s replicas=%s", signal.Signals(signum).name, len(self.replicas))
        self.stopping = True

    def run(self) -> int:
        log.info("SupervisorStarted id=%s reconcile_interval=%s heartbeat_interval=%s lease_ttl=%s",
                 self.settings.supervisor_id, self.settings.reconcile_interval, self.settings.heartbeat_interval,
                 self.settings.supervisor_lease_ttl)
        while self.slots is not None and not self.registered and not self.stopping:
            try:
                self.register()
            except AnotherSupervisor as exc:
                log.error("SupervisorRefused: %s", exc)
                return EXIT_SUPERVISOR_RUNNING
            if not self.registered:
                time.sleep(1.0)  # the database is down: nothing can be run without a lease (logged rate-limited)
        self._redis("starting to read commands (reconciling from the database only until it is back)",
                    self.redis.start_reading_commands)
        while not self.stopping:
            woke = self._wait_for_commands()
            now = time.monotonic()
            if now >= self._next_reconcile:
                self.reconcile()
                self._next_reconcile = now + self.settings.reconcile_interval
            elif woke:
                self.reconcile(self._commanded)
            self._commanded = set()
            self.coordinate(balance_now=woke)
            self.step()
        self.shutdown()
        return 0

    def _wait_for_commands(self) -> bool:
        commands = self._redis("reading commands", self.redis.wait_for_commands, self.tick_seconds)
        if commands is FAILED:
            time.sleep(self.tick_seconds)  # the tick's wait that the blocking read did not do
            return False
        for command in commands:
            log.info("CommandReceived consumer=%s action=%s generation=%s", command.get("consumer_id"),
                     command.get("action"), command.get("generation"))
            cid = command.get("consumer_id", "")
            try:
                self._commanded.add(str(uuid.UUID(cid)))
            except ValueError:
                self._next_reconcile = 0.0  # a command naming no consumer: everything, now
        return bool(commands)

    def shutdown(self) -> None:
        """Drain: stop every worker gracefully (SIGTERM, SIGKILL after stopwaitsecs), releasing each slot as its
        worker exits so the other supervisors take it at once; then withdraw."""
        self.stopping = True
        if self.slots is not None:
            self.slots.draining = True  # the others leave us out of their share from the next renew on
        for replica in self.replicas.values():
            replica.want(None, running=False, generation=replica.machine.desired_generation)
            replica.retired = False  # keep their state hashes: they read STOPPED, not gone
        deadline = time.monotonic() + self.settings.stopwaitsecs + 5
        while (any(r.proc is not None for r in self.replicas.values()) or (self.slots and self.slots.held)) \
                and time.monotonic() < deadline:
            self.coordinate()
            self.step()
            time.sleep(self.tick_seconds)
        for replica in self.replicas.values():
            if replica.proc is not None:
                replica.proc.kill()
                replica.proc.wait(5)
        self.step()
        if self.slots is not None and self.registered:
            self._db("withdrawing from the database", self.slots.withdraw)
        self._redis("withdrawing", self.redis.withdraw)
        log.info("SupervisorStopped id=%s", self.settings.supervisor_id)

    # ------------------------------------------------------------------ reconcile (desired state)
    def reconcile(self, only: set[str] | None = None) -> None:
        """Load every consumer (the periodic full pass) or only those named (a command, a claim)."""
        if only is not None and not only:
            return
        try:
            desired = load_desired(self.session_factory, only)
            running = [(cid, c.replicas) for cid, c in desired.items() if c.running]
            if self.slots is not None:
                self.slots.ensure(running)
                if only is None:
                    self.slots.cleanup()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            log.error("DatabaseUnavailable: %s", str(exc).splitlines()[0])
            return
        # state hashes nobody will delete: a deleted consumer's, and a stopped consumer's beyond its replicas
        gone = (set(self.consumers) if only is None else only) - set(desired)
        gone_replicas = {(cid, n): ANY_EPOCH for cid in gone if cid in self.consumers
                         for n in range(self.consumers[cid].replicas)}
        gone_replicas.update({(cid, n): ANY_EPOCH for cid, c in desired.items() if not c.running
                              and cid in self.consumers for n in range(c.replicas, self.consumers[cid].replicas)})
        for key in self.replicas:  # ours: deleted once its worker is gone (supervisor/assignment.py)
            gone_replicas.pop(key, None)
        if only is None:
            self.consumers = desired
        else:
            for cid in only:
                self.consumers.pop(cid, None)
            self.consumers.update(desired)
        self._placehold(desired, gone_replicas)
        if not self._swept and only is None:
            self._sweep_forgotten_states(desired)

    def _placehold(self, desired: dict[str, DesiredConsumer], gone: dict[tuple[str, int], int]) -> None:
        """Stopped consumers read STOPPED though no supervisor holds them; a deleted one's placeholders go."""
        if self._placeheld_for != self._redis_up_since:  # Redis came back (maybe empty): all again
            self._placeheld.clear()
            self._placeheld_for = self._redis_up_since
        todo = [(cid, n, c.generation) for cid, c in desired.items() if not c.running and cid not in self._placeheld
                for n in range(c.replicas)]
        if gone:
            self._redis("deleting a deleted consumer's placeholders", self.redis.delete_fenced, gone)
        if todo and self._redis("writing stopped placeholders", self.redis.placehold, todo) is not FAILED:
            self._placeheld.update(cid for cid, _n, _g in todo)
        self._placeheld.difference_update({cid for cid, c in desired.items() if c.running} | {c for c, _n in gone})

    def _sweep_forgotten_states(self, desired: dict[str, DesiredConsumer]) -> None:
        """After a restart: drop state hashes of replicas deleted or scaled away while we were down."""
        def sweep() -> list[tuple[str, int]]:
            stale = [(cid, n) for cid, n in self.redis.our_state_keys()
                     if cid not in desired or n >= desired[cid].replicas]
            self.redis.delete_states(stale)
            return stale

        stale = self._redis("sweeping state hashes", sweep)
        if stale is FAILED:
            return
        self._swept = True
        for cid, n in stale:
            log.info("ReplicaRemoved consumer=%s replica=%s reason=gone-while-supervisor-was-down", cid, n)
        self._purge_dead_letters({cid for cid, _n in stale if cid not in desired})

    # ------------------------------------------------------------------ one tick
    def step(self) -> None:
        for replica in self.replicas.values():
            replica.reap(lambda pid, r=replica: self._worker_reason(r, pid))
        heartbeats = self._read_heartbeats()
        redis_up_for = self.redis_up_for()
        for replica in self.replicas.values():
            hb = None
            if heartbeats is not None and replica.proc is not None:
                hb = self.redis.judge(heartbeats.get(replica.key), replica.proc.pid)
            replica.step(hb, redis_up_for)
        self._publish()
        self._write_slot_states()
        self._settle()
        self._beat()

    def _read_heartbeats(self) -> dict | None:
        live = [(r.consumer_id, r.index, r.proc.pid) for r in self.replicas.values() if r.proc is not None]
        if not live:  # no round trip: a call that reached no server must not count as Redis being up
            return {}
        return self._redis("reading heartbeats", self.redis.read_heartbeats, live, default=None)

    def _worker_reason(self, replica: Replica, pid: int) -> str:
        """The worker's own last_error from its final heartbeat (read after the reap, so it is complete)."""
        beats = self._redis("reading a stopped worker's last heartbeat", self.redis.read_heartbeats,
                            [(replica.consumer_id, replica.index, pid)], default={})
        fields = beats.get(replica.key, {})
        return fields.get("last_error", "") if fields.get("pid") == str(pid) else ""

    def _publish(self) -> None:
        now = time.monotonic()
        force = now >= self._next_republish
        changed = {}
        for key, replica in self.publishable().items():
            fields = replica.fields()
            if force or self.published.get(key) != fields:
                changed[key] = fields
        if not changed:
            return
        states = {key: (self.replicas[key].epoch or 0, fields) for key, fields in changed.items()}
        if self._redis("publishing states", self.redis.publish_states, states) is FAILED:
            return
        self.published.update(changed)
        if force:
            self._next_republish = now + max(self.settings.reconcile_interval, FULL_REPUBLISH_SECONDS)

    def _purge_dead_letters(self, consumer_ids: set[str]) -> None:
        """A deleted consumer's dead letters, once its last worker is gone: the API purged them at the
        delete, but a worker still stopping then could dead-letter one more message."""
        if not consumer_ids:
            return
        store = DeadLetterStore(self.redis.client)
        for cid in sorted(consumer_ids):
            store.purge_logged(cid, log, reason="late-after-delete")

    def _beat(self) -> None:
        now = time.monotonic()
        if now < self._next_beat:
            return
        self._next_beat = now + self.settings.heartbeat_interval
        if self._redis("supervisor heartbeat", self.redis.beat, len(self.replicas)) is not FAILED:
            self._redis("cleaning the supervisor index", self.redis.clean_supervisor_index)
