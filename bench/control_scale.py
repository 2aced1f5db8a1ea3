"""Benchmark: the supervisor's CPU per start command with 20 and with 2,000 consumers stored (most stopped).

A command reconciles only the consumer it names (supervisor/daemon.py); the full pass over every consumer runs
every ``KCM_RECONCILE_INTERVAL``. Each side gets its own supervisor over its own database contents: the same two
running consumers, the probe consumer and 17 or 1,997 stopped ones. A cycle: the probe's desired state set to
running + a start command -> its replica RUNNING (the supervisor's CPU over that span is the figure) -> stop ->
STOPPED. The full pass's own CPU with each count is measured too (a command naming no consumer asks for one),
so the periodic cost is shown next to the per-command one.
"""
from __future__ import annotations

import statistics
import sys
import time
import uuid

import sqlalchemy as sa

from bench.harness import wait_until
from bench.kafka_util import unique
from bench.procfs import cpu_seconds
from bench.results import Result, Target, fmt
from bench.stack import Service, ensure_database, reset_state
from bench.stats import ratio

RUNNING = 2  # consumers running on both sides (their workers tick in both)
SIDES = (20, 2000)
FULL_PASSES = 5
RECONCILE_INTERVAL = "3600"  # no periodic pass inside a measured window: it is measured on its own


def _insert(engine, topic: str, bootstrap: str, count: int) -> tuple[str, list[str]]:
    """``count`` consumers: RUNNING of them running, the rest (the probe first) stopped."""
    from schema.models import Consumer, DownstreamProcessor
    from schema.states import DesiredState

    ids = [uuid.uuid4() for _ in range(count)]
    consumers = [{"id": cid, "topic": topic, "consumer_group": unique("kcm-bench-scale"),
                  "bootstrap_servers": [bootstrap], "replicas": 1, "auto_offset_reset": "earliest",
                  "desired_state": DesiredState.RUNNING if n < RUNNING else DesiredState.STOPPED,
                  "status": "INACTIVE", "generation": 1} for n, cid in enumerate(ids)]
    processors = [{"id": uuid.uuid4(), "consumer_id": cid, "processor_type": "file_sink", "position": 0,
                   "on_error": "retry", "config": {"path": f"scale/{cid}.log"}} for cid in ids]
    with engine.begin() as conn:
        for start in range(0, count, 500):
            conn.execute(sa.insert(Consumer.__table__), consumers[start:start + 500])
            conn.execute(sa.insert(DownstreamProcessor.__table__), processors[start:start + 500])
    return str(ids[RUNNING]), [str(c) for c in ids[:RUNNING]]


def _state(client, cid: str) -> str:
    from schema import keys

    return (client.hget(keys.replica_state_key(cid, 0), "state") or b"").decode()


def _set(engine, client, cid: str, desired: str, action: str) -> None:
    from api.services.commands import CommandPublisher
    from schema.models import Consumer
    from schema.states import CommandAction, DesiredState

    table = Consumer.__table__
    with engine.begin() as conn:
        generation = conn.execute(sa.update(table).where(table.c.id == uuid.UUID(cid)).values(
            desired_state=DesiredState(desired), generation=table.c.generation + 1).returning(table.c.generation)).scalar()
    CommandPublisher(client).publish(cid, generation, CommandAction(action))


def _side(h, topic: str, count: int, cycles: int) -> dict:
    import redis

    from schema import keys
    from schema.db import make_engine

    url, redis_url = h.env.scale_database_url, h.env.scale_redis_url  # --bench-db NAME_scale, --bench-redis-db N-1
    ensure_database(url)
    reset_state(url, redis_url)
    engine = make_engine(url)
    client = redis.Redis.from_url(redis_url)
    probe, running = _insert(engine, topic, h.env.bootstrap, count)
    env = h.env.kcm_environ(KCM_DATABASE_URL=url, KCM_REDIS_URL=redis_url, KCM_RECONCILE_INTERVAL=RECONCILE_INTERVAL,
                            KCM_SUPERVISOR_ID=f"kcm-bench-scale-{count}-{h.env.run_id}")
    sup = Service(f"supervisor-{count}", [sys.executable, "-m", "supervisor"], env,
                  h.env.workdir / "logs" / f"supervisor-scale-{count}.log")
    try:
        wait_until(lambda: all(_state(client, c) == "RUNNING" for c in running), 120, interval=0.1,
                   what=f"{RUNNING} running consumers RUNNING")
        passes = []
        for _ in range(FULL_PASSES):  # a command naming no consumer: one full pass, now
            before = cpu_seconds(sup.pid)
            client.xadd(keys.COMMAND_STREAM, {"consumer_id": "", "action": "update", "generation": "0"})
            time.sleep(1.0)  # the pass, then idle ticks: the idle share is subtracted below
            passes.append(cpu_seconds(sup.pid) - before)
        idle_before, idle_at = cpu_seconds(sup.pid), time.monotonic()
        time.sleep(3.0)
        idle_rate = (cpu_seconds(sup.pid) - idle_before) / (time.monotonic() - idle_at)
        starts, spans = [], []
        for i in range(cycles + 1):  # the first cycle warms up (imports, first spawn)
            before, at = cpu_seconds(sup.pid), time.monotonic()
            _set(engine, client, probe, "running", "start")
            wait_until(lambda: _state(client, probe) == "RUNNING", 60, interval=0.01, what="probe RUNNING")
            cpu, span = cpu_seconds(sup.pid) - before, time.monotonic() - at
            _set(engine, client, probe, "stopped", "stop")
            wait_until(lambda: _state(client, probe) == "STOPPED", 60, interval=0.01, what="probe STOPPED")
            if i:
                starts.append(cpu)
                spans.append(span)
        return {"consumers": count, "start_cpu_s": starts, "start_span_s": spans, "idle_cpu_per_s": idle_rate,
                "full_pass_cpu_s": [max(p - idle_rate * 1.0, 0.0) for p in passes]}
    finally:
        sup.stop(30)
        reset_state(url, redis_url)
        engine.dispose()


def control_scale(h) -> Result:
    cycles = max(h.args.control_runs // 2, 5)
    topic = h.prefilled_topic(100, 1, 100)
    runs = [_side(h, topic, count, cycles) for count in SIDES]
    for run in runs:
        print(f"  {run['consumers']:>5} consumers: start CPU mean {statistics.mean(run['start_cpu_s']) * 1000:.0f} ms, "
              f"full pass {statistics.median(run['full_pass_cpu_s']) * 1000:.0f} ms")
    small, large = runs
    figures = {}
    for run in runs:
        n = run["consumers"]
        figures[f"start_cpu_ms_mean_{n}"] = statistics.mean(run["start_cpu_s"]) * 1000
        figures[f"start_cpu_ms_median_{n}"] = statistics.median(run["start_cpu_s"]) * 1000
        figures[f"start_span_s_median_{n}"] = statistics.median(run["start_span_s"])
        figures[f"idle_cpu_pct_{n}"] = run["idle_cpu_per_s"] * 100
        figures[f"full_pass_cpu_ms_median_{n}"] = statistics.median(run["full_pass_cpu_s"]) * 1000
    value = ratio(figures["start_cpu_ms_mean_2000"], figures["start_cpu_ms_mean_20"])
    rows = [[label, fmt(figures[f"{key}_{SIDES[0]}"], digits, unit), fmt(figures[f"{key}_{SIDES[1]}"], digits, unit)]
            for label, key, digits, unit in [
                ("supervisor CPU per start command (mean)", "start_cpu_ms_mean", 1, " ms"),
                ("supervisor CPU per start command (median)", "start_cpu_ms_median", 1, " ms"),
                ("start command -> RUNNING (median)", "start_span_s_median", 2, " s"),
                ("supervisor CPU idle", "idle_cpu_pct", 2, " % of one core"),
                ("one full reconcile pass (median)", "full_pass_cpu_ms_median", 0, " ms")]]
    rows.append(["2,000 ÷ 20 (CPU per start, mean)", fmt(value, 2), ""])
    return Result(
        name="control_scale", title="Control-plane scale",
        baseline="the same start command with 20 consumers stored",
        params={"cycles": cycles, "running_consumers": RUNNING, "sides": list(SIDES),
                "reconcile_interval_s": float(RECONCILE_INTERVAL), "tick_clock": "CLK_TCK 10 ms"},
        columns=["", f"{SIDES[0]} consumers", f"{SIDES[1]} consumers"], rows=rows, figures=figures, runs=runs,
        ratio=value, ratio_label="supervisor CPU per start command, 2,000 stored ÷ 20 stored",
        targets=[Target(label="CPU per start, 2,000 ÷ 20", value=value, op="<", target=2.0)],
        notes=["A start command reconciles the consumer it names (one SELECT with its processors), claims its slot "
               "(supervisor/slots.py) and spawns its worker; the supervisor's utime + stime from /proc is summed "
               "from the command to the replica's RUNNING state hash.",
               "The periodic full pass loads every consumer: its CPU is shown per pass; with the default "
               "KCM_RECONCILE_INTERVAL of 5 s that is its cost per 5 s, whatever the command rate.",
               f"Most consumers are stopped: {RUNNING} run on both sides; stopped consumers have no slot and no "
               "replica in the supervisor, so ticks do not grow with them."])
