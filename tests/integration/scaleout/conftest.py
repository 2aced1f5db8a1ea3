"""Several real ``python -m supervisor`` processes (each its own KCM_SUPERVISOR_ID) sharing the replica slots of
consumers that stream into file sinks, over the real PostgreSQL, Redis and Kafka (docs/runtime.md, "Several
supervisors"). A sampler thread watches /proc every 100 ms for two live workers of one slot.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from schema import keys
from schema.db import make_engine, make_session_factory
from schema.models import Consumer, DownstreamProcessor, ReplicaSlot, SupervisorRow
from schema.spec import PARENT_PID_ENV, SPEC_ENV
from schema.states import DesiredState
from tests.integration.runtime.conftest import FAST, decoded, pid_alive
from tests.support.kafka import wait_for

TTL = 3.0  # KCM_SUPERVISOR_LEASE_TTL in these tests: short, yet far above a tick on a loaded 2-core machine


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


class Sampler(threading.Thread):
    """Every 100 ms: the live worker processes of the cluster's supervisors, per slot (from their spec)."""

    def __init__(self, cluster: Cluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.samples: list[dict[tuple[str, int], list[int]]] = []
        self.twins: list[tuple[float, tuple[str, int], list[int]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            by_slot = self.cluster.workers_by_slot()
            self.samples.append(by_slot)
            for slot, pids in by_slot.items():
                if len(pids) > 1:
                    self.twins.append((time.time(), slot, pids))
            self._halt.wait(0.1)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


class Cluster:
    def __init__(self, *, pg_url: str, redis_client, redis_url: str, bootstrap: str, tmp_path: Path):
        self.pg_url = pg_url
        self.engine = make_engine(pg_url)
        self.sessions = make_session_factory(self.engine)
        self.redis = redis_client
        self.bootstrap = bootstrap
        self.tmp_path = tmp_path
        self.sink_root = tmp_path / "sink"
        self.sink_root.mkdir()
        self.env = {**os.environ, **FAST, "KCM_DATABASE_URL": pg_url, "KCM_REDIS_URL": redis_url,
                    "KCM_SUPERVISOR_LEASE_TTL": str(TTL), "KCM_FILE_SINK_ROOT": str(self.sink_root),
                    "KCM_RECONCILE_INTERVAL": "2"}
        self.procs: dict[str, subprocess.Popen] = {}
        self.consumers: list[str] = []
        self.sampler: Sampler | None = None

    # ------------------------------------------------------------------ supervisors
    def start(self, name: str, **extra_env) -> str:
        sid = f"{name}-{uuid.uuid4().hex[:6]}"
        log = open(self.tmp_path / f"supervisor-{sid}.log", "ab")
        self.procs[sid] = subprocess.Popen([sys.executable, "-m", "supervisor"],
                                           env={**self.env, "KCM_SUPERVISOR_ID": sid, **extra_env},
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return sid

    def log(self, sid: str) -> str:
        return (self.tmp_path / f"supervisor-{sid}.log").read_text(errors="replace")

    def wait_registered(self, sids, timeout: float = 60) -> None:
        def check():
            with self.engine.connect() as conn:
                live = set(conn.execute(sa.select(SupervisorRow.id).where(
                    SupervisorRow.lease_expires_at > sa.func.now())).scalars())
            return set(sids) <= live
        wait_for(check, timeout=timeout, message=f"supervisors {sorted(sids)} registered")

    # ------------------------------------------------------------------ desired state (what the API writes)
    def create_consumers(self, topic: str, count: int, placement: dict | None = None) -> list[str]:
        created = []
        with self.sessions() as session, session.begin():
            for _ in range(count):
                consumer = Consumer(
                    bootstrap_servers=[self.bootstrap], topic=topic, consumer_group=f"kcm-so-{uuid.uuid4().hex[:8]}",
                    replicas=1, auto_offset_reset="earliest", desired_state=DesiredState.RUNNING, generation=1,
                    placement=placement)
                session.add(consumer)
                session.flush()
                consumer.downstream_processors.append(DownstreamProcessor(
                    processor_type="file_sink", position=0,
                    config={"file_path": f"{consumer.id}.jsonl", "format": "json"}))
                created.append(str(consumer.id))
        for cid in created:
            self.redis.xadd(keys.COMMAND_STREAM, {"consumer_id": cid, "generation": "1", "action": "create",
                                                  "ts": f"{time.time():.3f}"})
        self.consumers.extend(created)
        return created

    # ------------------------------------------------------------------ observations
    def slots(self) -> dict[str, tuple[str | None, int, str | None]]:
        """consumer id -> (holder, epoch, state) of replica 0."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(ReplicaSlot.consumer_id, ReplicaSlot.holder, ReplicaSlot.epoch,
                                          ReplicaSlot.state, ReplicaSlot.lease_expires_at > sa.func.now())
                                .where(ReplicaSlot.replica == 0)).all()
        return {str(r[0]): (r[1] if r[4] else None, int(r[2]), r[3]) for r in rows}

    def spread(self) -> Counter:
        return Counter(holder for holder, _e, _s in self.slots().values() if holder)

    def state(self, cid: str) -> dict[str, str]:
        return decoded(self.redis.hgetall(keys.replica_state_key(cid, 0)))

    def running_everywhere(self, cids=None, *, not_on: str | None = None) -> dict[str, dict[str, str]] | None:
        """Every consumer's replica RUNNING under its slot's current holder (not ``not_on``) and epoch, else None."""
        cids = cids or self.consumers
        slots = self.slots()
        states = {cid: self.state(cid) for cid in cids}
        for cid in cids:
            holder, epoch, _state = slots.get(cid, (None, 0, None))
            st = states[cid]
            if holder is None or holder == not_on or st.get("state") != "RUNNING" or st.get("supervisor") != holder \
                    or st.get("epoch") != str(epoch) or not st.get("pid"):
                return None
        return states

    def wait_running(self, timeout: float = 120, cids=None, not_on: str | None = None) -> dict[str, dict[str, str]]:
        return wait_for(lambda: self.running_everywhere(cids, not_on=not_on), timeout=timeout, interval=0.1,
                        message=f"every replica RUNNING under its holder (spread {dict(self.spread())})")

    def worker_pids(self) -> dict[int, tuple[tuple[str, int], str]]:
        """Live ``python -m workers`` processes of this cluster's supervisors: pid -> (slot, parent pid).

        Read afresh every time (a cached answer would keep counting a fork that has since exec'd another program)."""
        parents = {str(p.pid) for p in self.procs.values()}
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            spec = self._read_spec(entry)
            if spec is not None and spec[1] in parents and pid_alive(int(entry.name)):
                found[int(entry.name)] = spec
        # a worker's own short-lived child (ctypes' find_library forks ldconfig) carries its cmdline and
        # environment until it execs: it is not a second worker
        return {pid: spec for pid, spec in found.items() if _ppid(pid) not in found}

    @staticmethod
    def _read_spec(entry: Path) -> tuple[tuple[str, int], str] | None:
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if b"workers" not in cmdline or b"-m" not in cmdline:
                return None
            environ = dict(item.split(b"=", 1) for item in (entry / "environ").read_bytes().split(b"\0")
                           if b"=" in item)
        except OSError:
            return None
        raw, parent = environ.get(SPEC_ENV.encode()), environ.get(PARENT_PID_ENV.encode())
        if raw is None or parent is None:
            return None
        spec = json.loads(raw)
        return (spec["consumer_id"], int(spec["replica"])), parent.decode()

    def workers_by_slot(self) -> dict[tuple[str, int], list[int]]:
        by_slot: dict[tuple[str, int], list[int]] = {}
        for pid, (slot, _parent) in self.worker_pids().items():
            by_slot.setdefault(slot, []).append(pid)
        return by_slot

    def start_sampler(self) -> Sampler:
        self.sampler = Sampler(self)
        self.sampler.start()
        return self.sampler

    def sink(self, cid: str) -> list[tuple[int, int]]:
        path = self.sink_root / f"{cid}.jsonl"
        if not path.exists():
            return []
        return [(e["partition"], e["offset"]) for e in map(json.loads, path.read_bytes().splitlines())]

    def sinks_complete(self, total: int) -> bool:
        return all(len(set(self.sink(cid))) >= total for cid in self.consumers)

    def check_sinks(self, total: int, *, duplicates_allowed: bool) -> None:
        """Every sink holds every produced message (``total`` over the topic), and no duplicate if so asked."""
        wait_for(lambda: self.sinks_complete(total), timeout=90, interval=0.5,
                 message=f"every sink holds all {total} messages")
        for cid in self.consumers:
            lines = self.sink(cid)
            assert len(set(lines)) == total, f"{cid}: {len(set(lines))} distinct of {total}"
            if not duplicates_allowed:
                assert len(lines) == total, f"{cid}: {len(lines) - total} duplicate line(s)"

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        if self.sampler is not None and self.sampler.is_alive():
            self.sampler.stop()
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for pid in self.worker_pids():  # a failing test must not leak workers into the next one
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.engine.dispose()


class Producer(threading.Thread):
    """A modest steady stream (``rate`` messages a second) into the topic until stopped; ``sent`` counts them."""

    def __init__(self, bootstrap: str, topic: str, rate: int = 20):
        super().__init__(daemon=True)
        from confluent_kafka import Producer as KafkaProducer

        self.producer = KafkaProducer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
        self.topic, self.rate = topic, rate
        self.sent = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for _ in range(max(self.rate // 10, 1)):
                self.producer.produce(self.topic, key=b"k%d" % self.sent, value=b"%010d" % self.sent)
                self.sent += 1
            self.producer.poll(0)
            self._halt.wait(0.1)

    def stop(self) -> int:
        """Stop, flush; the number of messages delivered."""
        self._halt.set()
        self.join(10)
        if self.producer.flush(30):
            raise AssertionError("the producer could not deliver every message")
        return self.sent


@pytest.fixture
def cluster_factory(pg_clean, redis_client, redis_test_url, kafka_bootstrap, tmp_path):
    made: list[Cluster] = []

    def make(pg_url: str) -> Cluster:
        cluster = Cluster(pg_url=pg_url, redis_client=redis_client, redis_url=redis_test_url,
                          bootstrap=kafka_bootstrap, tmp_path=tmp_path)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()


@pytest.fixture
def cluster(cluster_factory, pg_url):
    return cluster_factory(pg_url)


@pytest.fixture
def private_pg_url():
    """A private, migrated PostgreSQL that a test may restart (tests/chaos/services.py): never the shared one."""
    from schema.migrate import upgrade
    from tests.chaos.services import PrivatePostgres

    service = PrivatePostgres()
    try:
        service.start()
        upgrade(service.url)
        yield service
    finally:
        service.close()


@pytest.fixture
def client(pg_clean, redis_client, redis_test_url, pg_url):
    """The API over the shared test database (tests/integration/api/conftest.py's app, admin token)."""
    from tests.integration.api.conftest import EXTENSION, make_app

    app = make_app(pg_url, redis_test_url)
    yield app.test_client()
    app.extensions[EXTENSION].close()
