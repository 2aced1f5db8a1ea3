"""The supervisor loop: reconcile desired state with processes, tick every replica, publish what it sees.

Reconcile from the database on start, on every command in the Redis stream (a wake-up only) and every
``KCM_RECONCILE_INTERVAL`` seconds regardless, so a lost command or a supervisor restart heals itself.
"""
from __future__ import annotations

import logging
import signal
import time

import redis
import sqlalchemy.exc

from schema.dead_letter_store import DeadLetterStore
from schema.exits import CONNECT_TIMEOUT, REDIS_SOCKET_TIMEOUT
from schema.ratelimited_log import Outages
from schema.replica_machine import Timings
from schema.settings import Settings
from schema.states import ConsumerStatus, ProcessState, consumer_status
from supervisor.desired import DesiredConsumer, load_desired, write_status
from supervisor.redis_state import RedisState
from supervisor.replica import Replica

# every state hash is rewritten this often even when unchanged, so a Redis that lost its data heals; changes
# are published on the tick they happen (rewriting hundreds of unchanged hashes every reconcile costs CPU)
FULL_REPUBLISH_SECONDS = 60.0

log = logging.getLogger("kcm.supervisor")

FAILED = object()  # what ``Supervisor._redis`` returns by default when the call failed


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


class Supervisor:
    def __init__(self, settings: Settings, session_factory, client: redis.Redis):
        self.settings = settings
        self.session_factory = session_factory
        self.redis = RedisState(client, supervisor_id=settings.supervisor_id,
                                heartbeat_interval=settings.heartbeat_interval)
        self.timings = timings_from(settings)
        self.replicas: dict[tuple[str, int], Replica] = {}
        self.consumers: dict[str, DesiredConsumer] = {}
        self.status_written: dict[str, ConsumerStatus] = {}
        self.published: dict[tuple[str, int], dict[str, str]] = {}
        self.stopping = False
        self.tick_seconds = min(0.5, max(0.05, settings.heartbeat_interval / 2))
        self._next_reconcile = 0.0
        self._next_beat = 0.0
        self._next_republish = 0.0
        self._swept = False
        self._redis_up_since: float | None = None  # our Redis calls have all succeeded since then
        self._redis_outages = Outages(log, "RedisUnavailable")

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
        log.info("SupervisorStarted id=%s reconcile_interval=%s heartbeat_interval=%s", self.settings.supervisor_id,
                 self.settings.reconcile_interval, self.settings.heartbeat_interval)
        self._redis("starting to read commands (reconciling from the database only until it is back)",
                    self.redis.start_reading_commands)
        while not self.stopping:
            woke = self._wait_for_commands()
            now = time.monotonic()
            if woke or now >= self._next_reconcile:
                self.reconcile()
                self._next_reconcile = now + self.settings.reconcile_interval
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
        return bool(commands)

    def shutdown(self) -> None:
        """Stop every worker gracefully (SIGTERM, SIGKILL after stopwaitsecs), then withdraw."""
        for replica in self.replicas.values():
            replica.want(None, running=False, generation=replica.machine.desired_generation)
            replica.retired = False  # keep their state hashes: they read STOPPED, not gone
        deadline = time.monotonic() + self.settings.stopwaitsecs + 5
        while any(r.proc is not None for r in self.replicas.values()) and time.monotonic() < deadline:
            self.step()
            time.sleep(self.tick_seconds)
        for replica in self.replicas.values():
            if replica.proc is not None:
                replica.proc.kill()
                replica.proc.wait(5)
        self.step()
        self._redis("withdrawing", self.redis.withdraw)
        log.info("SupervisorStopped id=%s", self.settings.supervisor_id)

    # ------------------------------------------------------------------ reconcile (desired state)
    def reconcile(self) -> None:
        try:
            desired = load_desired(self.session_factory)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            log.error("DatabaseUnavailable: %s", str(exc).splitlines()[0])
            return
        self.consumers = desired
        for cid, consumer in desired.items():
            # what the database says now: a status someone else overwrote is corrected on the next step
            self.status_written[cid] = consumer.status
            for n, spec in enumerate(consumer.specs):
                replica = self.replicas.get((cid, n))
                if replica is None:
                    replica = self.replicas[(cid, n)] = Replica(cid, n, self.timings)
                replica.want(spec, running=consumer.running, generation=consumer.generation)
        for (cid, n), replica in self.replicas.items():
            consumer = desired.get(cid)
            if consumer is None or n >= consumer.replicas:  # deleted, or replicas shrank
                replica.want(None, running=False, generation=replica.machine.desired_generation)
        for cid in list(self.status_written):
            if cid not in desired:
                del self.status_written[cid]
        if not self._swept:
            self._sweep_forgotten_states(desired)

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
        self._drop_retired()
        self._write_statuses()
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
        for key, replica in self.replicas.items():
            fields = replica.fields()
            if force or self.published.get(key) != fields:
                changed[key] = fields
        if not changed:
            return
        if self._redis("publishing states", self.redis.publish_states, changed) is FAILED:
            return
        self.published.update(changed)
        if force:
            self._next_republish = now + max(self.settings.reconcile_interval, FULL_REPUBLISH_SECONDS)

    def _drop_retired(self) -> None:
        gone = [key for key, r in self.replicas.items()
                if r.retired and r.proc is None and r.machine.state == ProcessState.STOPPED]
        if not gone:
            return
        if self._redis("deleting states", self.redis.delete_states, gone) is FAILED:
            return
        for key in gone:
            del self.replicas[key]
            self.published.pop(key, None)
            log.info("ReplicaRemoved consumer=%s replica=%s", *key)
        deleted = {cid for cid, _n in gone if cid not in self.consumers}
        self._purge_dead_letters({cid for cid in deleted if not any(k[0] == cid for k in self.replicas)})

    def _purge_dead_letters(self, consumer_ids: set[str]) -> None:
        """A deleted consumer's dead letters, once its last worker is gone: the API purged them at the
        delete, but a worker still stopping then could dead-letter one more message."""
        if not consumer_ids:
            return
        store = DeadLetterStore(self.redis.client)
        for cid in sorted(consumer_ids):
            store.purge_logged(cid, log, reason="late-after-delete")

    def _write_statuses(self) -> None:
        # one pass over the replicas, not one per consumer: hundreds of stopped consumers stay cheap
        states_by_consumer: dict[str, list] = {}
        for (cid, _n), replica in self.replicas.items():
            if not replica.retired:
                states_by_consumer.setdefault(cid, []).append(replica.status_state)
        for cid in self.consumers:
            if cid not in self.status_written:
                continue
            status = consumer_status(states_by_consumer.get(cid, []))
            if status == self.status_written[cid]:
                continue
            try:
                write_status(self.session_factory, cid, status)
            except sqlalchemy.exc.SQLAlchemyError as exc:
                log.error("DatabaseUnavailable: writing status of %s: %s", cid, str(exc).splitlines()[0])
                return
            log.info("ConsumerStatus consumer=%s from=%s to=%s", cid, self.status_written[cid].value, status.value)
            self.status_written[cid] = status

    def _beat(self) -> None:
        now = time.monotonic()
        if now < self._next_beat:
            return
        self._next_beat = now + self.settings.heartbeat_interval
        if self._redis("supervisor heartbeat", self.redis.beat, len(self.replicas)) is not FAILED:
            self._redis("cleaning the supervisor index", self.redis.clean_supervisor_index)
