"""An operator's bad day, fault by fault, each during a paced stream (docs/reliability.md has the bounds).

Every scenario asserts: 0 missing; duplicates within the fault's bound (0 where nothing is killed); never two
live workers for one replica; the consumer truly RUNNING again within RECOVERY_LIMIT; and, after a clean stop,
committed offsets equal to the high watermarks. Faults that stop a service use a PRIVATE instance.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from tests.chaos.conftest import create_topic
from tests.chaos.harness import (
    FAULT_AT,
    RATE,
    RECOVERY_LIMIT,
    PacedProducer,
    Result,
    Sampler,
    Stack,
    committed_equals_high,
    file_sink_entries,
    pid_alive,
    topic_messages,
    verify,
)
from tests.support.kafka import wait_for

KILL_BOUND = int(RATE * 2.5)  # about one commit interval plus the batch in flight, with margin


def _file_sink(path: str = "chaos/out.jsonl") -> tuple[str, dict, str]:
    return ("file_sink", {"file_path": path, "format": "json"}, "retry")


def _scenario(name: str, stack: Stack, topic: str, fault, *, bound: int, sink_reader, replicas: int = 1,
              processors=None, poison=None, accounted=lambda: set(), seconds: float | None = None) -> Result:
    """Run one fault during a paced stream and check everything; returns the result row."""
    result = Result(fault=name, duplicate_bound=bound)
    stack.create_consumer(topic, processors or [_file_sink()], replicas=replicas)
    stack.start_supervisor()
    stack.wait_running()
    kwargs = {"poison": poison} if poison else {}
    if seconds is not None:
        kwargs["seconds"] = seconds
    producer = PacedProducer(stack.bootstrap, topic, **kwargs)
    sampler = Sampler(stack)
    producer.start()
    sampler.start()
    try:
        time.sleep(FAULT_AT)
        fault_end = fault(stack)
        wait_for(stack.truly_running, timeout=RECOVERY_LIMIT, interval=0.1,
                 message=f"{name}: consumer truly RUNNING after the fault (now {stack.status()})")
        result.recovery_s = time.monotonic() - fault_end
        producer.join(300)
        assert producer.error is None, f"the paced producer failed: {producer.error}"
        result.produced = producer.sent
        topic_view = topic_messages(stack.bootstrap, topic)
        assert len(topic_view) == producer.sent
        wait_for(lambda: len({(p, o) for p, o, _v in sink_reader()} | accounted()) >= len(topic_view),
                 timeout=120, interval=0.5, message=f"{name}: the sink caught up")
        stack.set_running(False)
        stack.wait_stopped()
    finally:
        sampler.done.set()
        sampler.join(5)
    verify(result, topic_view, sink_reader(), accounted())
    result.max_live_per_replica = sampler.max_live
    result.committed_equals_high = committed_equals_high(stack, topic)
    assert result.missing == 0, f"{name}: {result.missing} messages missing"
    assert result.duplicates <= bound, f"{name}: {result.duplicates} duplicates, over the bound {bound}"
    assert sampler.max_live <= 1, f"{name}: two live workers for one replica: {sampler.twins[:3]}"
    assert result.committed_equals_high, f"{name}: committed offsets are not the high watermarks after a clean stop"
    return result


@pytest.fixture
def make_stack(pg_engine, pg_url, pg_clean, tmp_path):
    stacks: list[Stack] = []

    def make(*, redis_url: str, bootstrap: str, sink_root: Path | None = None, **env) -> Stack:
        root = sink_root or tmp_path / "sink"
        stack = Stack(pg_engine=pg_engine, redis_url=redis_url, bootstrap=bootstrap, tmp_path=tmp_path,
                      env={"KCM_DATABASE_URL": pg_url, "KCM_FILE_SINK_ROOT": str(root), **env})
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()


def _file_reader(root: Path, path: str = "chaos/out.jsonl"):
    return lambda: file_sink_entries(root / path)


# ---------------------------------------------------------------------- process faults
def test_kill_9_worker(chaos_round, make_stack, private_redis, kafka_bootstrap, tmp_path, record):
    stack = make_stack(redis_url=private_redis.url, bootstrap=kafka_bootstrap)

    def fault(s: Stack) -> float:
        s.killed.add(s.worker_pid(0))
        os.kill(s.worker_pid(0), signal.SIGKILL)
        return time.monotonic()

    record(_scenario("kill -9 worker", stack, create_topic(kafka_bootstrap), fault, bound=KILL_BOUND,
                     sink_reader=_file_reader(tmp_path / "sink")))


def test_sigstop_worker_30s(chaos_round, make_stack, private_redis, kafka_bootstrap, tmp_path, record):
    stack = make_stack(redis_url=private_redis.url, bootstrap=kafka_bootstrap)

    def fault(s: Stack) -> float:
        pid = s.worker_pid(0)
        s.killed.add(pid)
        os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        # the supervisor must find it hung and replace it well within the 30 s it stays stopped
        deadline = stopped_at + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGCONT)
            raise AssertionError("a SIGSTOPped worker was not replaced within 30 s")
        assert "heartbeat lost (hung worker)" in s.supervisor_log()
        return stopped_at

    record(_scenario("SIGSTOP worker 30 s", stack, create_topic(kafka_bootstrap), fault, bound=KILL_BOUND,
                     sink_reader=_file_reader(tmp_path / "sink")))


def test_kill_9_supervisor_and_restart(chaos_round, make_stack, private_redis, kafka_bootstrap, tmp_path, record):
    stack = make_stack(redis_url=private_redis.url, bootstrap=kafka_bootstrap)

    def fault(s: Stack) -> float:
        pids = s.workers().get(0, [])
        s.killed.update(pids)
        s.supervisors[-1].send_signal(signal.SIGKILL)
        s.supervisors[-1].wait(10)
        wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=20, message="workers follow their supervisor")
        # the supervisor's key expires: the status says so instead of RUNNING
        wait_for(lambda: (st := s.status()) is not None and st["state"] == "UNKNOWN" and st["status"] != "ACTIVE",
                 timeout=15, interval=0.2, message=f"status of an unsupervised consumer (now {s.status()})")
        s.start_supervisor()
        return time.monotonic()

    record(_scenario("kill -9 supervisor, restart", stack, create_topic(kafka_bootstrap), fault, bound=KILL_BOUND,
                     sink_reader=_file_reader(tmp_path / "sink")))


def test_kill_9_worker_with_two_replicas(chaos_round, make_stack, private_redis, kafka_bootstrap, tmp_path, record):
    stack = make_stack(redis_url=private_redis.url, bootstrap=kafka_bootstrap)

    def fault(s: Stack) -> float:
        s.killed.add(s.worker_pid(0))
        os.kill(s.worker_pid(0), signal.SIGKILL)
        return time.monotonic()

    record(_scenario("kill -9 worker, replicas: 2", stack, create_topic(kafka_bootstrap), fault, bound=KILL_BOUND,
                     replicas=2, sink_reader=_file_reader(tmp_path / "sink")))


def test_clean_stop_start_ten_times(chaos_round, make_stack, private_redis, kafka_bootstrap, tmp_path, record):
    stack = make_stack(redis_url=private_redis.url, bootstrap=kafka_bootstrap)

    def fault(s: Stack) -> float:
        for _ in range(10):
            s.set_running(False)
            s.wait_stopped()
            s.set_running(True)
            s.wait_running()
        return time.monotonic()

    record(_scenario("clean stop/start x 10", stack, create_topic(kafka_bootstrap), fault, bound=0,
                     sink_reader=_file_reader(tmp_path / "sink"), seconds=60))


# ---------------------------------------------------------------------- dependency outages (private services)
def test_redis_stop_30s(chaos_round, make_stack, private_redis, kafka_bootstrap, tmp_path, record):
    stack = make_stack(redis_url=private_redis.url, bootstrap=kafka_bootstrap)

    def fault(s: Stack) -> float:
        private_redis.stop()
        time.sleep(30)
        private_redis.start()
        return time.monotonic()

    record(_scenario("Redis stop 30 s", stack, create_topic(kafka_bootstrap), fault, bound=0,
                     sink_reader=_file_reader(tmp_path / "sink"), seconds=45))
    # nothing was killed: the worker that ran before the outage is the one that ran after it
    assert "hung worker" not in stack.supervisor_log()
    assert stack.supervisor_log().count("WorkerSpawned") == 1
    assert stack.supervisor_log().count("RedisUnavailable") < 30, "outage logs are not rate-limited"


def test_broker_stop_20s(chaos_round, make_stack, private_redis, private_kafka, tmp_path, record):
    stack = make_stack(redis_url=private_redis.url, bootstrap=private_kafka.bootstrap)

    def fault(s: Stack) -> float:
        private_kafka.stop()
        time.sleep(20)
        private_kafka.start()
        return time.monotonic()

    record(_scenario("broker stop 20 s", stack, create_topic(private_kafka.bootstrap), fault, bound=KILL_BOUND,
                     sink_reader=_file_reader(tmp_path / "sink"), seconds=45))


def test_postgres_stop_20s_under_database_sync(chaos_round, make_stack, private_redis, private_postgres,
                                              kafka_bootstrap, record):
    dsn = make_url(private_postgres.url).set(drivername="postgresql").render_as_string(hide_password=False)
    stack = make_stack(redis_url=private_redis.url, bootstrap=kafka_bootstrap, KCM_SECRET_CHAOS_DSN=dsn)
    table = "chaos_rows"
    processors = [("database_sync", {"table": table, "create_table": True, "value_format": "text",
                                     "dsn": "${env:KCM_SECRET_CHAOS_DSN}", "connect_timeout": 2}, "retry")]

    def rows():
        try:
            with psycopg2.connect(dsn, connect_timeout=2) as conn, conn.cursor() as cur:
                cur.execute(f'SELECT partition, "offset", value FROM "{table}"')
                return [(p, o, v.encode()) for p, o, v in cur.fetchall()]
        except psycopg2.Error:
            return []

    def fault(s: Stack) -> float:
        private_postgres.stop()
        time.sleep(20)
        private_postgres.start()
        return time.monotonic()

    record(_scenario("PostgreSQL stop 20 s (database_sync)", stack, create_topic(kafka_bootstrap), fault, bound=0,
                     processors=processors, sink_reader=rows, seconds=45))


# ---------------------------------------------------------------------- bad data and a full disk
def test_poison_values_under_dead_letter(chaos_round, make_stack, private_redis, kafka_bootstrap, pg_url, record):
    from rq.job import Job

    from schema import keys

    stack = make_stack(redis_url=private_redis.url, bootstrap=kafka_bootstrap)
    table = f"chaos_json_{chaos_round}"
    dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    processors = [("database_sync", {"table": table, "create_table": True, "value_format": "json",
                                     "max_retries": 5, "retry_backoff": 0.5}, "dead_letter")]

    def rows():
        try:
            with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
                cur.execute(f'SELECT partition, "offset", value::text FROM "{table}"')
                return [(p, o, v.encode()) for p, o, v in cur.fetchall()]
        except psycopg2.Error:
            return []

    def dead_lettered() -> set[tuple[int, int]]:
        ids = stack.redis.zrange(keys.dead_letter_index(stack.cid), 0, -1)
        metas = [Job.fetch(i.decode(), connection=stack.redis).meta["dead_letter"] for i in ids]
        return {(m["partition"], m["offset"]) for m in metas}

    def fault(s: Stack) -> float:
        return time.monotonic()  # the fault is in the data: every 500th value is not JSON

    result = _scenario("poison values (dead_letter)", stack, create_topic(kafka_bootstrap), fault, bound=0,
                       processors=processors, poison=lambda seq: seq % 500 == 250,
                       sink_reader=lambda: [(p, o, _json_value(v)) for p, o, v in rows()], accounted=dead_lettered)
    poisoned = dead_lettered()
    assert len(poisoned) == result.produced // 500
    record(result)
    # one poison costs a bisection, not five full-batch retries: no RetryingBatch before its dead letter
    assert "attempt 1 failed" not in stack.supervisor_log()


def _json_value(text: bytes) -> bytes:
    import json

    return b'{"seq": %d}' % json.loads(text)["seq"]


def test_full_disk_under_file_sink(chaos_round, make_stack, private_redis, kafka_bootstrap, record):
    mount = Path(tempfile.mkdtemp(prefix="kcm-chaos-tmpfs-"))
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    assert result.returncode == 0, f"cannot mount a tmpfs for the full-disk fault (needs root): {result.stderr}"
    try:
        stack = make_stack(redis_url=private_redis.url, bootstrap=kafka_bootstrap, sink_root=mount)
        filler = mount / "filler"
        snapshot: list = []

        def fault(s: Stack) -> float:
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)  # fill the disk to the last byte, unbuffered
            try:
                for size in (1 << 20, 4096, 1):
                    try:
                        while os.write(fd, b"\0" * size):
                            pass
                    except OSError:
                        pass
            finally:
                os.close(fd)
            time.sleep(20)  # the sink retries (partitions paused), then exits 70 and is restarted
            filler.unlink()
            return time.monotonic()

        def reader():
            entries = file_sink_entries(mount / "chaos" / "out.jsonl")
            snapshot[:] = entries
            return entries

        record(_scenario("full disk (file_sink on a 32 MB tmpfs)", stack, create_topic(kafka_bootstrap), fault,
                         bound=KILL_BOUND, sink_reader=reader, seconds=40))
        assert "No space left on device" in stack.supervisor_log()
    finally:
        if "stack" in locals():
            stack.close()  # its workers hold the sink file: stop them before the unmount
        for _attempt in range(50):
            if subprocess.run(["umount", str(mount)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        shutil.rmtree(mount, ignore_errors=True)
