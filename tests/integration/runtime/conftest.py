"""Fixtures for the runtime tests: a real ``python -m supervisor`` subprocess over the real services.

Desired state is written straight into PostgreSQL (as the API would) and a command is XADDed to wake the
supervisor. Intervals are short so each test runs in seconds.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from schema import keys
from schema.db import make_session_factory
from schema.models import Consumer, DownstreamProcessor
from schema.spec import PARENT_PID_ENV
from schema.states import DesiredState
from tests.support.kafka import wait_for

FAST = {
    "KCM_HEARTBEAT_INTERVAL": "0.3",  # TTL 0.9 s: short, yet no false "hung" on a loaded 2-core CI
    "KCM_RECONCILE_INTERVAL": "1",
    "KCM_STARTSECS": "0.5",
    "KCM_STARTRETRIES": "2",
    "KCM_BACKOFF_MAX": "2",
    "KCM_STOPWAITSECS": "5",
    "KCM_BATCH_SIZE": "500",
    "KCM_BATCH_TIMEOUT": "0.2",
    "KCM_LOG_LEVEL": "INFO",
    # a killed worker's partitions move after 6 s (the broker's group.min.session.timeout.ms), not 10
    "KCM_SESSION_TIMEOUT_MS": "6000",
}


def pid_alive(pid: int) -> bool:
    """True for a running (or stopped) process; a zombie or a missing pid is dead."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def decoded(raw: dict) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


class Runtime:
    """One test's view of kcm: the database, Redis, the supervisor process and its workers."""

    def __init__(self, *, pg_engine, redis_client, kafka_bootstrap, tmp_path: Path, env: dict[str, str]):
        self.sessions = make_session_factory(pg_engine)
        self.redis = redis_client
        self.bootstrap = kafka_bootstrap
        self.tmp_path = tmp_path
        self.env = env
        self.supervisors: list[subprocess.Popen] = []
        self.seen_pids: set[int] = set()

    # ------------------------------------------------------------------ desired state (what the API writes)
    def create_consumer(self, topic: str, *, replicas: int = 1, running: bool = True, bootstrap: str | None = None,
                        processor_config: dict | None = None, security: dict | None = None) -> tuple[str, Path]:
        out = self.tmp_path / f"collected-{uuid.uuid4().hex[:8]}.txt"
        with self.sessions() as session, session.begin():
            consumer = Consumer(
                bootstrap_servers=[bootstrap or self.bootstrap], topic=topic, consumer_group=f"kcm-rt-{topic}",
                replicas=replicas, auto_offset_reset="earliest", security=security,
                desired_state=DesiredState.RUNNING if running else DesiredState.STOPPED, generation=1,
            )
            consumer.downstream_processors.append(DownstreamProcessor(
                processor_type="test_collector", config={"path": str(out), **(processor_config or {})}, position=0))
            session.add(consumer)
        cid = str(consumer.id)
        self.command(cid, "create")
        return cid, out

    def consumer(self, cid: str) -> Consumer:
        with self.sessions() as session:
            return session.get(Consumer, uuid.UUID(cid))

    def consumer_with_processors(self, cid: str) -> Consumer:
        with self.sessions() as session:
            consumer = session.get(Consumer, uuid.UUID(cid))
            list(consumer.downstream_processors)  # loaded while the session is open
            return consumer

    def change(self, cid: str, *, command: str | None = None, bump: bool = True, **values) -> int:
        with self.sessions() as session, session.begin():
            consumer = session.get(Consumer, uuid.UUID(cid))
            for name, value in values.items():
                setattr(consumer, name, value)
            if bump:
                consumer.generation += 1
            generation = consumer.generation
        if command:
            self.command(cid, command, generation)
        return generation

    def command(self, cid: str, action: str, generation: int | None = None) -> None:
        if generation is None:
            generation = self.consumer(cid).generation
        self.redis.xadd(keys.COMMAND_STREAM, {"consumer_id": cid, "generation": str(generation), "action": action,
                                              "ts": f"{time.time():.3f}"})

    # ------------------------------------------------------------------ the supervisor
    def start_supervisor(self, **extra_env) -> subprocess.Popen:
        log = open(self.tmp_path / f"supervisor-{len(self.supervisors)}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "supervisor"], env={**self.env, **extra_env},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.supervisors.append(proc)
        return proc

    def supervisor_log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp_path.glob("supervisor-*.log")))

    # ------------------------------------------------------------------ observations
    def state(self, cid: str, n: int = 0) -> dict[str, str]:
        return decoded(self.redis.hgetall(keys.replica_state_key(cid, n)))

    def heartbeat(self, cid: str, n: int = 0) -> dict[str, str]:
        return decoded(self.redis.hgetall(keys.heartbeat_key(cid, n)))

    def wait_state(self, cid: str, state: str, n: int = 0, timeout: float = 40) -> dict[str, str]:
        def check():
            fields = self.state(cid, n)
            if fields.get("pid"):
                self.seen_pids.add(int(fields["pid"]))
            return fields if fields.get("state") == state else None
        return wait_for(check, timeout=timeout, interval=0.05, message=f"replica {n} of {cid} in {state} "
                        f"(now {self.state(cid, n)})")

    def worker_pid(self, cid: str, n: int = 0) -> int:
        pid = int(self.wait_state(cid, "RUNNING", n)["pid"])
        self.seen_pids.add(pid)
        return pid

    def worker_pids(self) -> list[int]:
        """Every live ``python -m workers`` process spawned by one of this test's supervisors (even orphaned)."""
        parents = {f"{PARENT_PID_ENV}={p.pid}".encode() for p in self.supervisors}
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                if b"workers" not in cmdline or b"-m" not in cmdline:
                    continue
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if parents.intersection(environ.split(b"\0")) and pid_alive(int(entry.name)):
                pids.append(int(entry.name))
        return pids

    def collected(self, path: Path) -> list[tuple[int, int]]:
        if not path.exists():
            return []
        lines = path.read_bytes().splitlines()
        return [(int(parts[1]), int(parts[2])) for parts in (line.split(b" ", 3) for line in lines)]

    def cleanup(self) -> None:
        for proc in self.supervisors:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.supervisors:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for pid in self.worker_pids():  # a failing test must not leak workers into the next one
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def runtime(pg_url, pg_engine, pg_clean, redis_client, redis_test_url, kafka_bootstrap, tmp_path):
    env = {**os.environ, **FAST, "KCM_DATABASE_URL": pg_url, "KCM_REDIS_URL": redis_test_url,
           "KCM_SUPERVISOR_ID": f"test-{uuid.uuid4().hex[:6]}"}
    rt = Runtime(pg_engine=pg_engine, redis_client=redis_client, kafka_bootstrap=kafka_bootstrap, tmp_path=tmp_path,
                 env=env)
    yield rt
    rt.cleanup()
