"""Benchmark 5: control latency over N cycles. Start: ``POST /start`` -> first message durable in the sink.
Stop: ``POST /stop`` -> the worker process gone with the group's offsets committed. Baseline: spawning a
bare consumer process -> first message; SIGTERM to it -> gone with offsets committed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from bench.harness import wait_until
from bench.kafka_util import unique
from bench.observe import FileProgress
from bench.procfs import process_gone
from bench.results import Result, Target, fmt
from bench.stats import percentile, ratio

MESSAGES = 1000
SIZE = 100


def _first_line(path, timeout: float = 60) -> float:
    progress = FileProgress(str(path), SIZE + 1)
    wait_until(lambda: progress.count() > 0, timeout, interval=0.002, what="first message in the sink")
    return time.time()


def _stopped(h, pids, group, topic, timeout: float = 60) -> float:
    target = h.offsets.high_watermarks(topic)
    wait_until(lambda: all(process_gone(p) for p in pids) and h.offsets.committed(group, topic) == target,
               timeout, interval=0.01, what="worker gone with offsets committed")
    return time.time()


def kcm_cycle(h, topic: str) -> dict:
    client = h.stack().client
    path = h.sink_path("kcm-control")
    group = unique("kcm-bench-control")
    consumer = client.create_consumer({
        "bootstrap_servers": [h.env.bootstrap], "topic": topic, "consumer_group": group,
        "downstream_processors": [{"processor_type": "file_sink",
                                   "config": {"path": str(path.relative_to(h.env.sink_root))}}]})
    cid = consumer["id"]
    try:
        asked = time.time()
        client.start(cid)
        start_s = _first_line(path) - asked
        wait_until(lambda: FileProgress(str(path), SIZE + 1).count() >= MESSAGES, 60, what="all messages")
        status = client.wait_status(cid, lambda s: all(r.get("pid") for r in s["replicas"]) and s["replicas"],
                                    timeout=30, interval=0.05)
        pids = [r["pid"] for r in status["replicas"]]
        asked = time.time()
        client.stop(cid)
        stop_s = _stopped(h, pids, group, topic) - asked
    finally:
        client.delete(cid)
    return {"start_s": start_s, "stop_s": stop_s}


def bare_cycle(h, topic: str) -> dict:
    path = h.sink_path("bare-control")
    group = unique("kcm-bench-control-bare")
    job = {"kind": "file", "bootstrap": h.env.bootstrap, "topic": topic, "group": group, "path": str(path),
           "expected": MESSAGES, "until_signal": True}
    asked = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "bench.bare", json.dumps(job)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        start_s = _first_line(path) - asked
        wait_until(lambda: FileProgress(str(path), SIZE + 1).count() >= MESSAGES, 60, what="all messages")
        asked = time.time()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(60)
        stop_s = _stopped(h, [proc.pid], group, topic) - asked
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"start_s": start_s, "stop_s": stop_s}


def control_latency(h) -> Result:
    runs_count = h.args.control_runs
    topic = h.prefilled_topic(MESSAGES, 1, SIZE)
    runs = []
    for i in range(runs_count):
        sides = ["kcm", "bare"] if i % 2 == 0 else ["bare", "kcm"]
        run = {side: (kcm_cycle if side == "kcm" else bare_cycle)(h, topic) for side in sides}
        h.discard_sinks()
        print(f"  cycle {i + 1}/{runs_count}: kcm start {run['kcm']['start_s'] * 1000:.0f} ms, stop "
              f"{run['kcm']['stop_s'] * 1000:.0f} ms | bare start {run['bare']['start_s'] * 1000:.0f} ms, "
              f"stop {run['bare']['stop_s'] * 1000:.0f} ms")
        runs.append(run)

    def pct(side, what, p):
        return percentile([r[side][f"{what}_s"] for r in runs], p)

    figures = {f"{side}_{what}_p{p}_s": pct(side, what, p)
               for side in ("kcm", "bare") for what in ("start", "stop") for p in (50, 95)}
    rows = [[f"{side} {what}", fmt(figures[f'{side}_{what}_p50_s'] * 1000, 0, "ms"),
             fmt(figures[f'{side}_{what}_p95_s'] * 1000, 0, "ms")]
            for what in ("start", "stop") for side in ("kcm", "bare")]
    start_ratio = ratio(figures["kcm_start_p50_s"], figures["bare_start_p50_s"])
    rows.append(["start p50 kcm ÷ bare", fmt(start_ratio, 2), ""])
    return Result(
        name="control_latency", title="Control latency", baseline="spawning a bare consumer process / SIGTERM to it",
        params={"cycles": runs_count, "messages_in_topic": MESSAGES, "partitions": 1},
        columns=["latency", "p50", "p95"], rows=rows, figures=figures, runs=runs, ratio=start_ratio,
        ratio_label="kcm start p50 ÷ bare process start p50",
        targets=[Target(label="start p50", value=figures["kcm_start_p50_s"], op="<", target=1.0, unit=" s")],
        notes=["kcm start: POST /start -> commit in PostgreSQL -> XADD wake-up -> supervisor reconcile -> spawn "
               "`python -m workers` -> lease, heartbeat, group join -> first batch fsynced in the file.",
               "kcm stop: POST /stop -> supervisor SIGTERM -> the worker finishes its batch, commits, exits; timed "
               "until the process is gone and the group's committed offsets equal the high watermarks.",
               "Each cycle uses a fresh consumer group, so the first batch is the whole topic (1,000 messages)."])
