"""The CLI over a running consumer: a real supervisor and lag monitor run what `kcm consumers start` asked for,
and status, lag, errors, dead letters, pause/resume, supervisors and offsets show and change the real thing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest

from tests.integration.runtime.conftest import FAST, Runtime
from tests.support.kafka import wait_for

LAG_MONITOR = {"KCM_LAG_INTERVAL": "0.5", "KCM_LAG_WINDOW": "4"}


@pytest.fixture
def stack(pg_url, pg_engine, live_api, redis_client, redis_test_url, kafka_bootstrap, tmp_path):
    """A supervisor and the lag monitor on the live API's database and Redis."""
    env = {**os.environ, **FAST, **LAG_MONITOR, "KCM_DATABASE_URL": pg_url, "KCM_REDIS_URL": redis_test_url,
           "KCM_SUPERVISOR_ID": f"cli-{uuid.uuid4().hex[:6]}"}
    rt = Runtime(pg_engine=pg_engine, redis_client=redis_client, kafka_bootstrap=kafka_bootstrap,
                 tmp_path=tmp_path, env=env)
    rt.start_supervisor()
    with open(tmp_path / "lag.log", "ab") as log:
        monitor = subprocess.Popen([sys.executable, "-m", "supervisor.lag"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    yield rt
    monitor.send_signal(signal.SIGTERM)
    try:
        monitor.wait(15)
    except subprocess.TimeoutExpired:
        monitor.kill()
    rt.cleanup()


def test_a_consumer_run_watched_and_rewound_from_the_cli(cli, live_api, stack, topic_factory, consumer_file,
                                                         tmp_path):
    topic = topic_factory(partitions=1)
    collected = tmp_path / "collected.txt"
    created = cli("consumers", "create", "--start", "-o", "table", "-f", consumer_file({
        "name": "cli-run", "bootstrap_servers": [stack.bootstrap], "topic": topic, "consumer_group": f"cli-{topic}",
        "downstream_processors": [{"processor_type": "test_collector", "on_error": "dead_letter", "config": {
            "path": str(collected), "fail_on": "POISON", "max_retries": 0, "dead_letter_max_retries": 0}}]}))
    assert created.returncode == 0, created.err
    assert "desired state running" in created.out
    cid = live_api.get("/consumers/cli-run/")["id"]

    # waits poll the API directly (cheaper than a CLI process per poll); the CLI then shows what was reached
    wait_for(lambda: (s := live_api.get(f"/consumers/{cid}/status/"))["state"] == "RUNNING" and s["replicas"][0]["alive"],
             timeout=60, interval=0.2, message=f"cli-run RUNNING ({stack.supervisor_log()[-800:]})")
    status = cli("consumers", "status", "cli-run").json
    assert status["state"] == "RUNNING" and status["replicas"][0]["alive"]
    assert status["replicas"][0]["supervisor_id"] == stack.env["KCM_SUPERVISOR_ID"]
    supervisors = cli("supervisors").json
    assert stack.env["KCM_SUPERVISOR_ID"] in {s["id"] for s in supervisors}

    sent = cli("produce", topic, input="one\ntwo\nPOISON-three\nfour\n")
    assert sent.returncode == 0 and "delivered 4 of 4" in sent.out
    wait_for(lambda: len(stack.collected(collected)) == 3, timeout=60, message="3 messages collected")

    wait_for(lambda: live_api.get(f"/consumers/{cid}/dead-letters/"), timeout=30, message="a dead letter")
    letters = cli("dead-letters", "list", "cli-run").json
    assert [(d["offset"], d["processor_type"]) for d in letters] == [(2, "test_collector")]
    shown = cli("dead-letters", "show", "cli-run", letters[0]["id"], "-o", "table")
    assert shown.returncode == 0 and "dead_lettered" in shown.out
    replayed = cli("dead-letters", "replay", "cli-run", letters[0]["id"])
    assert replayed.returncode == 0, replayed.err
    assert replayed.json["history"][-1]["event"] == "replay_requested"
    every = cli("dead-letters", "replay", "cli-run", "--all")
    assert every.returncode == 0 and every.json["replayed"] + len(every.json["refused"]) == 1
    assert cli("dead-letters", "discard", "cli-run", letters[0]["id"], "--yes").returncode == 0
    assert live_api.get(f"/consumers/{cid}/dead-letters/") == []
    errors = cli("consumers", "errors", "cli-run").json
    assert "dead_lettered" in {e["kind"] for e in errors}

    wait_for(lambda: (lag := live_api.get(f"/consumers/{cid}/status/")["lag"]) and lag["total_messages"] == 0
             and lag["partitions"][0]["committed"] == 4, timeout=60, interval=0.2, message="lag 0, offset 4 committed")
    lag = cli("consumers", "lag", "cli-run").json
    assert [(p["committed"], p["high_watermark"], p["lag_messages"]) for p in lag["partitions"]] == [(4, 4, 0)]
    table = cli("consumers", "lag", "cli-run", "-o", "table").out.splitlines()
    assert table[2].split() == ["PARTITION", "COMMITTED", "HIGH_WATERMARK", "LAG_MESSAGES", "LAG_SECONDS", "VERDICT"]

    watched = cli("consumers", "status", "cli-run", "--watch", "--interval", "0.2", "--count", "3")
    assert watched.returncode == 0, watched.err
    refreshes = [json.loads(line) for line in watched.out.splitlines()]
    assert len(refreshes) == 3 and all(r["state"] == "RUNNING" and r["id"] == cid for r in refreshes)
    as_table = cli("consumers", "status", "cli-run", "-w", "--interval", "0.2", "--count", "2", "-o", "table")
    assert as_table.out.count("kcm consumers status cli-run (every 0.2 s") == 2
    assert as_table.out.count("state:      RUNNING (desired running") == 2

    assert cli("consumers", "pause", "cli-run").json["desired_state"] == "paused"
    wait_for(lambda: live_api.get(f"/consumers/{cid}/status/")["state"] == "PAUSED", timeout=30, message="PAUSED")
    assert cli("consumers", "status", "cli-run").json["state"] == "PAUSED"
    assert cli("consumers", "resume", "cli-run").json["desired_state"] == "running"
    assert live_api.get("/consumers/cli-run/")["desired_state"] == "running"
    generation = live_api.get("/consumers/cli-run/")["generation"]
    restarted = cli("consumers", "restart", "cli-run")
    assert restarted.returncode == 0 and restarted.json["generation"] == generation + 1
    assert live_api.get("/consumers/cli-run/")["generation"] == generation + 1
    stopped = cli("consumers", "stop", "cli-run", "-o", "table")
    assert stopped.out.startswith("cli-run: ") and "desired state stopped" in stopped.out
    wait_for(lambda: live_api.get(f"/consumers/{cid}/")["status"] == "INACTIVE", timeout=30, message="INACTIVE")

    shown = cli("offsets", "show", "cli-run")
    assert shown.returncode == 0, shown.err
    assert [(p["partition"], p["committed"]) for p in shown.json["partitions"]] == [(0, 4)]

    dry = cli("offsets", "reset", "cli-run", "--to", "earliest", "-o", "table")
    assert dry.returncode == 0, dry.err
    assert dry.out.splitlines()[0].startswith("dry run, nothing changed")
    assert dry.out.splitlines()[2].split() == ["0", "4", "0"]
    assert live_api.get(f"/consumers/{cid}/offsets/")["partitions"][0]["committed"] == 4

    def reset():  # the group may still be leaving for a moment after the stop
        done = cli("offsets", "reset", "cli-run", "--to", "shift", "--shift", "-3", "--execute")
        assert done.returncode in (0, 1), done.err
        return done if done.returncode == 0 else None

    done = wait_for(reset, timeout=30, interval=0.5, message="offsets reset")
    assert done.json == {"dry_run": False, "partitions": [{"partition": 0, "from": 4, "to": 1}]}
    assert live_api.get(f"/consumers/{cid}/offsets/")["partitions"][0]["committed"] == 1
    forgotten = cli("offsets", "delete", "cli-run", "--yes")
    assert forgotten.returncode == 0, forgotten.err
    assert live_api.get(f"/consumers/{cid}/offsets/")["partitions"][0]["committed"] is None

    assert cli("consumers", "start", "cli-run").json["desired_state"] == "running"
    assert live_api.get(f"/consumers/{cid}/")["desired_state"] == "running"
    assert cli("consumers", "delete", "cli-run", "--yes").returncode == 0
    assert live_api.call("GET", f"/consumers/{cid}/")[0] == 404
