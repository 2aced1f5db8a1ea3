"""The chaos harness: a real supervisor and workers over a paced stream of sequence-numbered messages, a fault,
and a verifier that reads the topic and the sink itself (never through kcm) and reports what a user would check.

One scenario: create a topic and a consumer, start a supervisor, wait until the consumer truly runs
(``api.services.status``: the current process heartbeats and holds partitions), produce ``RATE`` messages a
second for ``SECONDS`` s, inflict the fault after ``FAULT_AT`` s, time how long the consumer takes to be truly
RUNNING again, let it drain, stop it cleanly and compare the committed offsets with the high watermarks. A
sampler thread counts the live ``python -m workers`` processes per replica the whole time.
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
from dataclasses import dataclass, field
from pathlib import Path

import redis

from api.services.status import StatusService
from schema import keys
from schema.db import make_session_factory
from schema.models import Consumer, DownstreamProcessor
from schema.spec import PARENT_PID_ENV, SPEC_ENV
from schema.states import DesiredState, ProcessState
from tests.support.kafka import committed_offsets, consume_all, high_watermarks, wait_for

RATE = 200  # messages per second, paced
SECONDS = 30  # of producing; a fault lands FAULT_AT s in
FAULT_AT = 4.0
RECOVERY_LIMIT = 60.0  # a consumer not truly RUNNING this long after a fault fails its scenario

SUPERVISOR_ENV = {
    "KCM_HEARTBEAT_INTERVAL": "0.5",
    "KCM_RECONCILE_INTERVAL": "1",
    "KCM_STARTSECS": "0.5",
    "KCM_STARTRETRIES": "3",
    "KCM_BACKOFF_MAX": "2",
    "KCM_STOPWAITSECS": "8",
    "KCM_BATCH_SIZE": "500",
    "KCM_BATCH_TIMEOUT": "0.2",
    "KCM_COMMIT_INTERVAL_MS": "1000",
    "KCM_LOG_LEVEL": "INFO",
}


def pid_alive(pid: int) -> bool:
    """Running or stopped (SIGSTOP) counts as alive; a zombie or a missing pid does not."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@dataclass
class Result:
    fault: str
    produced: int = 0
    delivered: int = 0
    missing: int = 0
    duplicates: int = 0
    duplicate_bound: int = 0
    recovery_s: float | None = None
    max_live_per_replica: int = 0
    committed_equals_high: bool = False
    notes: list[str] = field(default_factory=list)

    def row(self) -> str:
        recovery = f"{self.recovery_s:.1f}" if self.recovery_s is not None else "-"
        return (f"| {self.fault} | {self.produced} | {self.missing} | {self.duplicates} (≤ {self.duplicate_bound}) "
                f"| {recovery} | {self.max_live_per_replica} | {'yes' if self.committed_equals_high else 'NO'} |")


TABLE_HEAD = ("| fault | produced | missing | duplicates (bound) | recovery to RUNNING (s) | max live workers per "
              "replica | committed = high watermark after clean stop |\n|---|---|---|---|---|---|---|")


class Stack:
    """kcm over a given Kafka, Redis and state database, run as real processes."""

    def __init__(self, *, pg_engine, redis_url: str, bootstrap: str, tmp_path: Path, env: dict[str, str]):
        self.sessions = make_session_factory(pg_engine)
        self.redis_url = redis_url
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.bootstrap = bootstrap
        self.tmp_path = tmp_path
        self.env = {**os.environ, **SUPERVISOR_ENV, "KCM_REDIS_URL": redis_url,
                    "KCM_SUPERVISOR_ID": f"chaos-{uuid.uuid4().hex[:6]}", **env}
        self.supervisors: list[subprocess.Popen] = []
        self.cid = ""
        self.group = ""
        self.replicas = 1
        self.killed: set[int] = set()  # pids a fault killed: a status still naming one is not recovered

    # ------------------------------------------------------------------ desired state (what the API writes)
    def create_consumer(self, topic: str, processors: list[tuple[str, dict, str]], *, replicas: int = 1) -> str:
        self.group, self.replicas = f"kcm-chaos-{topic}", replicas
        with self.sessions() as session, session.begin():
            consumer = Consumer(bootstrap_servers=[self.bootstrap], topic=topic, consumer_group=self.group,
                                replicas=replicas, auto_offset_reset="earliest", desired_state=DesiredState.RUNNING,
                                generation=1)
            for position, (ptype, config, on_error) in enumerate(processors):
                consumer.downstream_processors.append(DownstreamProcessor(
                    processor_type=ptype, config=config, on_error=on_error, position=position))
            session.add(consumer)
        self.cid = str(consumer.id)
        self._command("create")
        return self.cid

    def set_running(self, running: bool) -> None:
        with self.sessions() as session, session.begin():
            consumer = session.get(Consumer, uuid.UUID(self.cid))
            consumer.desired_state = DesiredState.RUNNING if running else DesiredState.STOPPED
            consumer.generation += 1
        self._command("start" if running else "stop")

    def consumer(self) -> Consumer:
        with self.sessions() as session:
            return session.get(Consumer, uuid.UUID(self.cid))

    def _command(self, action: str) -> None:
        try:
            self.redis.xadd(keys.COMMAND_STREAM, {"consumer_id": self.cid, "action": action,
                                                  "generation": str(self.consumer().generation)})
        except redis.RedisError:
            pass  # a wake-up only: the periodic reconcile applies it anyway

    # ------------------------------------------------------------------ processes
    def start_supervisor(self) -> subprocess.Popen:
        log = open(self.tmp_path / f"supervisor-{len(self.supervisors)}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "supervisor"], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.supervisors.append(proc)
        return proc

    def supervisor_log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp_path.glob("supervisor-*.log")))

    def workers(self) -> dict[int, list[int]]:
        """Live ``python -m workers`` processes of our consumer, by replica, found in /proc (orphans too)."""
        found: dict[int, list[int]] = {}
        parents = {f"{PARENT_PID_ENV}={p.pid}".encode() for p in self.supervisors}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if b"workers" not in (entry / "cmdline").read_bytes():
                    continue
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if not parents.intersection(environ):
                continue
            for var in environ:
                if var.startswith(f"{SPEC_ENV}=".encode()):
                    spec = json.loads(var.split(b"=", 1)[1])
                    if spec.get("consumer_id") == self.cid and pid_alive(int(entry.name)):
                        found.setdefault(int(spec["replica"]), []).append(int(entry.name))
        return found

    def worker_pid(self, replica: int = 0) -> int:
        return wait_for(lambda: self.workers().get(replica, [None])[0], timeout=30, message=f"worker {replica}")

    # ------------------------------------------------------------------ truth
    def status(self) -> dict | None:
        try:
            return StatusService(self.redis).status(self.consumer())
        except Exception:  # Redis down: the API answers 503; for the harness it is "not known to run"
            return None

    def truly_running(self) -> bool:
        status = self.status()
        return bool(status) and status["status"] == "ACTIVE" and all(
            r["state"] == ProcessState.RUNNING and r["pid"] not in self.killed for r in status["replicas"])

    def wait_running(self, timeout: float = RECOVERY_LIMIT) -> float:
        start = time.monotonic()
        wait_for(self.truly_running, timeout=timeout, interval=0.1,
                 message=f"consumer truly RUNNING (now {self.status()})")
        return time.monotonic() - start

    def wait_stopped(self, timeout: float = 30) -> None:
        def stopped():
            try:
                states = [self.redis.hget(keys.replica_state_key(self.cid, n), "state") for n in range(self.replicas)]
            except redis.RedisError:
                return False
            return all(s == b"STOPPED" for s in states) and not self.workers()
        wait_for(stopped, timeout=timeout, interval=0.1, message="every replica STOPPED and no worker alive")

    def close(self) -> None:
        for proc in self.supervisors:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.supervisors:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for pids in self.workers().values():
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
        self.redis.close()


class PacedProducer(threading.Thread):
    """``rate`` messages a second for ``seconds``; values ``seq-%08d``, or a poison value where ``poison(seq)``."""

    def __init__(self, bootstrap: str, topic: str, *, rate: int = RATE, seconds: float = SECONDS, poison=None):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.rate, self.seconds, self.poison = bootstrap, topic, rate, seconds, poison
        self.sent = 0
        self.error: BaseException | None = None

    def value(self, seq: int) -> bytes:
        if self.poison is not None and self.poison(seq):
            return b"{not json %08d" % seq
        return b'{"seq": %d}' % seq

    def run(self) -> None:
        from confluent_kafka import Producer

        try:
            producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "enable.idempotence": True,
                                 "message.timeout.ms": 300000})
            tick, per_tick = 0.05, max(1, round(self.rate * 0.05))
            start, total = time.monotonic(), int(self.rate * self.seconds)
            while self.sent < total:
                for _ in range(min(per_tick, total - self.sent)):
                    producer.produce(self.topic, value=self.value(self.sent))
                    self.sent += 1
                producer.poll(0)
                time.sleep(max(0.0, start + (self.sent / per_tick) * tick - time.monotonic()))
            if producer.flush(300):
                raise AssertionError("the paced producer could not deliver everything")
        except BaseException as exc:  # reported by the scenario
            self.error = exc


class Sampler(threading.Thread):
    """Every 0.2 s: the most live workers any replica had (never more than one is the rule)."""

    def __init__(self, stack: Stack):
        super().__init__(daemon=True)
        self.stack, self.max_live, self.twins = stack, 0, []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for replica, pids in self.stack.workers().items():
                self.max_live = max(self.max_live, len(pids))
                if len(pids) > 1:
                    self.twins.append((time.monotonic(), replica, pids))


def topic_messages(bootstrap: str, topic: str) -> dict[tuple[int, int], bytes]:
    """Every message of the topic, read with a group of our own: ``(partition, offset) -> value``."""
    total = sum(high_watermarks(bootstrap, topic).values())
    messages = consume_all(bootstrap, topic, f"chaos-verify-{uuid.uuid4().hex[:8]}", total, timeout=120)
    return {(m.partition(), m.offset()): m.value() for m in messages}


def file_sink_entries(path: Path) -> list[tuple[int, int, bytes]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_bytes().splitlines():
        e = json.loads(line)
        entries.append((e["partition"], e["offset"], e["value"].encode()))
    return entries


def verify(result: Result, topic: dict[tuple[int, int], bytes], sink: list[tuple[int, int, bytes]],
           accounted_elsewhere: set[tuple[int, int]] = frozenset()) -> None:
    """Missing: in the topic, neither in the sink nor accounted for (dead-lettered). Duplicates: extra copies.
    Every value in the sink must be the topic's value at that position."""
    seen = [(p, o) for p, o, _v in sink]
    wrong = [(p, o) for p, o, v in sink if topic.get((p, o)) != v]
    assert not wrong, f"{len(wrong)} sink entries differ from the topic, e.g. {wrong[:3]}"
    result.delivered = len(set(seen))
    result.missing = len(set(topic) - set(seen) - set(accounted_elsewhere))
    result.duplicates = len(seen) - len(set(seen))


def committed_equals_high(stack: Stack, topic: str) -> bool:
    highs = high_watermarks(stack.bootstrap, topic)
    committed = committed_offsets(stack.bootstrap, stack.group, topic)
    return all(committed.get(p) == high for p, high in highs.items() if high > 0)
