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
import threading
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
              "KCM_STOPWAITSECS": "10", "KCM_LOG_LEVEL": "INFO",
              "KCM_SESSION_TIMEOUT_MS": "6000"}  # the killed member's partitions move after 6 s, not 10


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
                      group_id=f"kcm-kill9-{uuid.uuid4().hex[:8]}",
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
    from processors.database_target import target_ddl

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


PACED_RATE = 400  # messages per second, produced evenly (8 every 20 ms)
PACED_SECONDS = 9


def _produce_paced(bootstrap: str, topic: str, rate: int, seconds: float, stop: threading.Event) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True})
    tick, per_tick = 0.02, max(1, round(rate * 0.02))
    start, sent = time.monotonic(), 0
    while sent < rate * seconds and not stop.is_set():
        for _ in range(per_tick):
            producer.produce(topic, value=b"%08d" % sent)
            sent += 1
        producer.poll(0)
        time.sleep(max(0.0, start + (sent // per_tick) * tick - time.monotonic()))
    assert producer.flush(30) == 0


def test_kill_9_redelivers_at_most_about_one_commit_interval_of_a_paced_stream(
        kafka_bootstrap, topic_factory, sink_root, redis_test_url, tmp_path):
    """KCM_COMMIT_INTERVAL_MS=1000: a kill -9 redelivers at most ~1 s of traffic plus the batch in flight (with
    librdkafka's old 5 s default, the same kill 4 s into the run redelivers everything: nothing was committed)."""
    topic = topic_factory(partitions=1)
    spec = _spec(topic, [ProcessorSpec(id="file", processor_type="file_sink",
                                       config={"path": "paced/out.jsonl", "format": "json"})])
    interval_ms = 1000
    env = {**WORKER_ENV, "KCM_REDIS_URL": redis_test_url, "KCM_FILE_SINK_ROOT": str(sink_root),
           "KCM_COMMIT_INTERVAL_MS": str(interval_ms)}
    out = sink_root / "paced" / "out.jsonl"
    lines = lambda: out.read_bytes().splitlines() if out.exists() else []  # noqa: E731
    stop = threading.Event()
    producer = threading.Thread(target=_produce_paced, args=(kafka_bootstrap, topic, PACED_RATE, PACED_SECONDS, stop))
    worker = WorkerProcess(spec, env, tmp_path)
    producer.start()
    try:
        proc = worker.start()
        deadline = time.monotonic() + 30
        while not lines():
            assert proc.poll() is None and time.monotonic() < deadline, worker.tail()
            time.sleep(0.05)
        consuming_since = time.monotonic()
        while time.monotonic() < consuming_since + 4.0:  # the worker has consumed the paced stream for > 3 s
            assert proc.poll() is None, worker.tail()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        delivered_before_kill = len(lines())
        proc = worker.start()
        producer.join(PACED_SECONDS + 30)
        total = PACED_RATE * PACED_SECONDS
        deadline = time.monotonic() + 60
        while len({(e["partition"], e["offset"]) for e in map(json.loads, lines())}) < total:
            assert proc.poll() is None and time.monotonic() < deadline, worker.tail()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, worker.tail()
    finally:
        stop.set()
        producer.join(30)

    entries = [(e["partition"], e["offset"]) for e in map(json.loads, lines())]
    assert set(entries) == {(0, o) for o in range(total)}  # nothing lost
    redelivered = len(entries) - total
    batch_in_flight = PACED_RATE * float(WORKER_ENV["KCM_BATCH_TIMEOUT"])
    bound = (PACED_RATE * interval_ms / 1000 + batch_in_flight) * 1.5  # 50 % margin for a loaded machine
    assert delivered_before_kill >= PACED_RATE * 3  # the kill came after more than 3 s of traffic
    assert redelivered <= bound, (f"{redelivered} redelivered after kill -9, over the bound {bound:.0f} "
                                  f"({delivered_before_kill} delivered before the kill)")
