"""database_sync against a PostgreSQL server that is really stopped for 20 s, then started again.

The test runs its own small PostgreSQL server (initdb + pg_ctl) so stopping it disturbs no one else.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import psycopg2
import pytest

from processors.base import Record
from processors.pipeline import Pipeline
from schema.spec import ProcessorSpec

OUTAGE_SECONDS = 20


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} is missing: `make services` installs the postgresql package", pytrace=False)
    return found[-1]


def _as_owner(args: list[str]) -> list[str]:
    # the server refuses to run as root: run it as the postgres user, like deploy/local/services.sh
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _run(args: list[str]) -> None:
    subprocess.run(_as_owner(args), check=True, capture_output=True, timeout=120, cwd="/")


@pytest.fixture
def private_pg():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tempfile.mkdtemp(prefix="kcm-outage-", dir="/var/tmp")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data = os.path.join(root, "data")
    _run([_pg_bin("initdb"), "-D", data, "-U", "kcm", "-A", "trust", "-E", "UTF8"])
    ctl = [_pg_bin("pg_ctl"), "-D", data, "-l", os.path.join(root, "log"), "-w", "-t", "60",
           "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"]

    server = {"dsn": f"postgresql://kcm@127.0.0.1:{port}/postgres",
              "start": lambda: _run([*ctl, "start"]),
              "stop": lambda: _run([_pg_bin("pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"])}
    server["start"]()
    yield server
    subprocess.run(_as_owner([_pg_bin("pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]),
                   capture_output=True, timeout=60, cwd="/")
    shutil.rmtree(root, ignore_errors=True)


def test_postgres_stopped_for_20_s_then_back_retries_and_loses_nothing(private_pg, context, monkeypatch):
    monkeypatch.setenv("KCM_SECRET_TEST_OUTAGE_DSN", private_pg["dsn"])
    spec = ProcessorSpec(id="db-outage", processor_type="database_sync", config={
        "table": "outage_target", "dsn": "${env:KCM_SECRET_TEST_OUTAGE_DSN}", "value_format": "text",
        "create_table": True, "max_retries": 1000, "retry_timeout": 90, "retry_backoff": 0.2,
        "retry_backoff_max": 2})
    pipeline = Pipeline.build([spec], consumer_id="outage-test", context=context)
    pipeline.open()
    pipeline.deliver([Record("t", 0, i, b"before-%d" % i) for i in range(1_000)])

    private_pg["stop"]()
    stopped_at = time.monotonic()
    failure: list[BaseException] = []
    returned_at: list[float] = []

    def deliver_during_outage():
        try:
            pipeline.deliver([Record("t", 0, i, b"during-%d" % i) for i in range(1_000, 2_000)])
            returned_at.append(time.monotonic())
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    worker = threading.Thread(target=deliver_during_outage)
    worker.start()
    time.sleep(OUTAGE_SECONDS)
    assert worker.is_alive() and not failure, "deliver must keep retrying while PostgreSQL is down"
    private_pg["start"]()
    worker.join(90)
    assert not worker.is_alive() and not failure, failure
    assert returned_at[0] - stopped_at >= OUTAGE_SECONDS  # it returned only after the server was back
    assert pipeline.stats["db-outage"]["retries"] >= 3
    pipeline.deliver([Record("t", 0, i, b"after-%d" % i) for i in range(2_000, 2_500)])
    pipeline.close()

    with psycopg2.connect(private_pg["dsn"]) as conn, conn.cursor() as cur:
        cur.execute('SELECT count(*), count(DISTINCT "offset"), min("offset"), max("offset") FROM outage_target')
        assert cur.fetchone() == (2_500, 2_500, 0, 2_499)
