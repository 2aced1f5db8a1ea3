"""End to end: ``python -m workers`` with real sinks, ``kill -9`` at random points of a 100,000-message stream.

Each test kills the worker at least 5 times while it writes (at a random count of rows already in the
table, plus a random few milliseconds so the kill lands anywhere in a batch), then lets a last worker
finish. At-least-once: no (partition, offset) missing from any sink. With ``exactly_once``: no duplicate
either, and the sink's own offsets end exactly at the high watermarks.

The last two tests drive the same real worker through the on_error policies: ``retry`` makes it exit 70
with the offsets before the poison message; ``dead_letter`` delivers 999 and leaves one rq dead letter.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid

import psycopg2
from sqlalchemy.engine import make_url

from schema.spec import SPEC_ENV, ProcessorSpec, WorkerSpec
from tests.conftest import ROOT
from tests.support.kafka import consume_all, high_watermarks, produce

TOTAL = 100_000
KILLS = 5
WORKER_ENV = {"KCM_HEARTBEAT_INTERVAL": "0.2", "KCM_BATCH_SIZE": "500", "KCM_BATCH_TIMEOUT": "0.2",
              "KCM_STOPWAITSECS": "10", "KCM_LOG_LEVEL": "INFO"}
# a killed member holds its partitions until its session expires: keep that short (broker minimum 6 s)
FAST_SESSION = {"session.timeout.ms": 6000}


def _dsn(pg_url: str) -> str:
    return make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _count(dsn: str, table: str) -> int:
    try:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(f'SELECT count(*) FROM "{table}"')
            return cur.fetchone()[0]
    except psycopg2.errors.UndefinedTable:
        return 0


class WorkerProcess:
    def __init__(self, spec: WorkerSpec, env: dict, log_dir):
        self.spec, self.env, self.log_dir, self.runs = spec, env, log_dir, 0

    def start(self) -> subprocess.Popen:
        self.runs += 1
        log = open(self.log_dir / f"worker-{self.runs}.log", "wb")
        env = {**os.environ, **self.env, SPEC_ENV: self.spec.to_json()}
        env.pop("KCM_SUPERVISOR_PID", None)
        return subprocess.Popen([sys.executable, "-m", "workers"], cwd=ROOT, env=env, stdout=log, stderr=log)

    def tail(self) -> str:
        return (self.log_dir / f"worker-{self.runs}.log").read_text()[-3000:]


def _kill_repeatedly_then_finish(worker: WorkerProcess, progress, total: int, rng: random.Random) -> list[int]:
    """Kill -9 at KILLS random progress points, then run one worker until ``progress() >= total``."""
    killed_at = []
    for _ in range(KILLS):
        # a point some thousands of rows past where this worker starts: every kill lands mid-stream
        threshold = progress() + rng.randint(total // 50, total * 3 // 20)
        proc = worker.start()
        deadline = time.monotonic() + 90
        while progress() < threshold:
            assert proc.poll() is None, f"worker exited {proc.returncode} early:\n{worker.tail()}"
            assert time.monotonic() < deadline, f"no progress to {threshold}:\n{worker.tail()}"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))  # anywhere inside the next batch
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at.append(progress())
    proc = worker.start()
    deadline = time.monotonic() + 120
    try:
        while progress() < total:
            assert proc.poll() is None, f"worker exited {proc.returncode}:\n{worker.tail()}"
            assert time.monotonic() < deadline, f"stuck at {progress()}:\n{worker.tail()}"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, worker.tail()
    return killed_at


def _spec(topic: str, processors: list[ProcessorSpec]) -> WorkerSpec:
    from tests.conftest import _required_env

    return WorkerSpec(consumer_id=str(uuid.uuid4()), replica=0, generation=1,
                      bootstrap_servers=_required_env("KCM_KAFKA_BOOTSTRAP"), topic=topic,
                      group_id=f"kcm-kill9-{uuid.uuid4().hex[:8]}", security=FAST_SESSION,
                      processors=tuple(processors))


def test_kill_9_loses_no_offset_in_file_sink_database_sync_and_kafka_forward(
        kafka_bootstrap, topic_factory, pg_url, pg_conn, sync_table, sink_root, redis_test_url, tmp_path):
    source, target = topic_factory(partitions=3), topic_factory(partitions=3)
    produce(kafka_bootstrap, source, TOTAL, size=60)
    spec = _spec(source, [
        ProcessorSpec(id="file", processor_type="file_sink", config={"path": "kill9/out.jsonl", "format": "json"}),
        ProcessorSpec(id="forward", processor_type="kafka_forward", config={"topic": target}),
        ProcessorSpec(id="db", processor_type="database_sync", config={"table": sync_table, "create_table": True}),
    ])
    env = {**WORKER_ENV, "KCM_DATABASE_URL": pg_url, "KCM_REDIS_URL": redis_test_url,
           "KCM_FILE_SINK_ROOT": str(sink_root)}
    dsn = _dsn(pg_url)
    killed_at = _kill_repeatedly_then_finish(WorkerProcess(spec, env, tmp_path), lambda: _count(dsn, sync_table),
                                             TOTAL, random.Random())
    assert len(killed_at) == KILLS and all(0 < n < TOTAL for n in killed_at)
    expected = {(p, o) for p, high in high_watermarks(kafka_bootstrap, source).items() for o in range(high)}
    assert len(expected) == TOTAL

    with pg_conn.cursor() as cur:  # database_sync: the primary key makes redeliveries no-ops
        cur.execute(f'SELECT partition, "offset" FROM "{sync_table}"')
        rows = cur.fetchall()
    assert len(rows) == TOTAL and set(rows) == expected

    lines = (sink_root / "kill9" / "out.jsonl").read_bytes().splitlines()
    in_file = {(e["partition"], e["offset"]) for e in map(json.loads, lines)}
    assert in_file == expected and len(lines) >= TOTAL  # duplicates allowed (at-least-once), gaps not

    forwarded_total = sum(high_watermarks(kafka_bootstrap, target).values())
    forwarded = consume_all(kafka_bootstrap, target, f"check-{target}", forwarded_total, timeout=120)
    assert {m.value() for m in forwarded} == {b"%010d:" % i + b"x" * 48 for i in range(TOTAL)}


def test_kill_9_with_exactly_once_database_sync_has_no_gap_and_no_duplicate(
        kafka_bootstrap, topic_factory, pg_url, pg_conn, sync_table, sink_root, redis_test_url, tmp_path):
    source = topic_factory(partitions=3)
    produce(kafka_bootstrap, source, TOTAL, size=60)
    _audit_committed_writes(pg_conn, sync_table)
    spec = _spec(source, [ProcessorSpec(id="db-eo", processor_type="database_sync",
                                        config={"table": sync_table, "create_table": True, "exactly_once": True})])
    env = {**WORKER_ENV, "KCM_DATABASE_URL": pg_url, "KCM_REDIS_URL": redis_test_url,
           "KCM_FILE_SINK_ROOT": str(sink_root)}
    dsn = _dsn(pg_url)
    killed_at = _kill_repeatedly_then_finish(WorkerProcess(spec, env, tmp_path), lambda: _count(dsn, sync_table),
                                             TOTAL, random.Random())
    assert len(killed_at) == KILLS
    highs = high_watermarks(kafka_bootstrap, source)
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT count(*), count(DISTINCT (partition, "offset")) FROM "{sync_table}"')
        assert cur.fetchone() == (TOTAL, TOTAL)
        cur.execute("SELECT partition, next_offset FROM kcm_offsets WHERE consumer_id = %s AND topic = %s",
                    (spec.consumer_id, source))
        assert dict(cur.fetchall()) == highs
        # every row the sink ever proposed in a committed transaction: a re-read message would show here
        cur.execute(f'SELECT count(*) FROM "{sync_table}_audit"')
        assert cur.fetchone()[0] == TOTAL


def _audit_committed_writes(pg_conn, table: str) -> None:
    """Count each row proposed to ``table`` by a committed INSERT, conflicting duplicates included (a BEFORE
    trigger fires before ON CONFLICT decides; a rolled-back batch rolls its audit rows back too)."""
    from processors.database_sync import target_ddl

    with pg_conn.cursor() as cur:
        cur.execute(target_ddl(f'"{table}"', "bytea"))
        cur.execute(f'CREATE TABLE "{table}_audit" (partition integer, "offset" bigint)')
        cur.execute(f'CREATE FUNCTION "{table}_audit_fn"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
                    f'INSERT INTO "{table}_audit" VALUES (NEW.partition, NEW."offset"); RETURN NEW; END $$')
        cur.execute(f'CREATE TRIGGER audit BEFORE INSERT ON "{table}" FOR EACH ROW EXECUTE FUNCTION "{table}_audit_fn"()')


def _run_until_exit(worker: WorkerProcess, timeout: float = 60) -> int:
    proc = worker.start()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        raise AssertionError(f"worker did not exit:\n{worker.tail()}") from None


def test_worker_with_retry_policy_exits_on_the_poison_with_offsets_before_it(
        kafka_bootstrap, topic_factory, redis_test_url, sink_root, tmp_path):
    from tests.support.kafka import committed_offsets

    topic = topic_factory(partitions=1)
    produce(kafka_bootstrap, topic, 1_000, value_fn=lambda i: b"POISON" if i == 500 else b"ok-%d" % i)
    out = tmp_path / "collected.txt"
    spec = _spec(topic, [ProcessorSpec(id="c", processor_type="test_collector", on_error="retry", config={
        "path": str(out), "fail_on": "POISON", "max_retries": 2, "retry_backoff": 0.01})])
    env = {**WORKER_ENV, "KCM_REDIS_URL": redis_test_url, "KCM_FILE_SINK_ROOT": str(sink_root)}
    worker = WorkerProcess(spec, env, tmp_path)
    code = _run_until_exit(worker)
    assert code == 70 and "DeliveryFailed" in worker.tail() and "poison message" in worker.tail()
    committed = committed_offsets(kafka_bootstrap, spec.group_id, topic)[0]
    assert 0 <= committed <= 500 or committed == -1001  # -1001: nothing committed yet, still before it
    offsets = [int(line.split()[2]) for line in out.read_text().splitlines()]
    assert 500 not in offsets and max(offsets) < 500


def test_worker_with_dead_letter_policy_delivers_999_and_dead_letters_the_poison(
        kafka_bootstrap, topic_factory, redis_test_url, redis_client, sink_root, tmp_path):
    from schema import keys

    topic = topic_factory(partitions=1)
    produce(kafka_bootstrap, topic, 1_000, value_fn=lambda i: b"POISON" if i == 500 else b"ok-%d" % i)
    out = tmp_path / "collected.txt"
    spec = _spec(topic, [ProcessorSpec(id="c", processor_type="test_collector", on_error="dead_letter", config={
        "path": str(out), "fail_on": "POISON", "max_retries": 1, "retry_backoff": 0.01})])
    env = {**WORKER_ENV, "KCM_REDIS_URL": redis_test_url, "KCM_FILE_SINK_ROOT": str(sink_root)}
    worker = WorkerProcess(spec, env, tmp_path)
    proc = worker.start()
    try:
        deadline = time.monotonic() + 60
        while not out.exists() or len(out.read_text().splitlines()) < 999:
            assert proc.poll() is None and time.monotonic() < deadline, worker.tail()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, worker.tail()
    offsets = sorted(int(line.split()[2]) for line in out.read_text().splitlines())
    assert offsets == [i for i in range(1_000) if i != 500]
    (job_id,) = redis_client.zrange(keys.dead_letter_index(spec.consumer_id), 0, -1)
    from rq.job import Job

    meta = Job.fetch(job_id.decode(), connection=redis_client).meta["dead_letter"]
    assert (meta["topic"], meta["offset"], meta["processor_id"]) == (topic, 500, "c")
