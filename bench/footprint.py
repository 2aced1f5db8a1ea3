"""Benchmark 7: footprint of N idle consumers (one empty single-partition topic each): resident memory
per worker and in total, and the supervisor's CPU over a window. Baseline: a bare idle confluent-kafka
consumer process."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from bench.harness import wait_until
from bench.kafka_util import unique
from bench.procfs import cpu_seconds, process_gone, pss_mb, rss_mb
from bench.results import Result, Target, fmt
from bench.stats import median, ratio

SETTLE_SECONDS = 5
BARE_PROCESSES = 3


def _heartbeat_pids(h, consumer_ids: list[str]) -> dict[str, int]:
    import redis

    from schema import keys

    client = redis.Redis.from_url(h.env.redis_url, decode_responses=True)
    pipe = client.pipeline(transaction=False)
    for cid in consumer_ids:
        pipe.hmget(keys.heartbeat_key(cid, 0), "pid", "phase")
    pids = {}
    for cid, (pid, phase) in zip(consumer_ids, pipe.execute(), strict=True):
        if pid and phase == "consuming":
            pids[cid] = int(pid)
    return pids


def _bare_idle(h, topics: list[str]) -> list[float]:
    procs = []
    try:
        for topic in topics:
            job = {"kind": "idle", "bootstrap": h.env.bootstrap, "topic": topic, "group": unique("kcm-bench-idle"),
                   "expected": 0, "until_signal": True, "timeout": 600}
            procs.append(subprocess.Popen([sys.executable, "-m", "bench.bare", json.dumps(job)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(SETTLE_SECONDS + 3)  # import, connect, join the group, sit idle
        return [rss_mb(p.pid) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def footprint(h) -> Result:
    stack = h.stack()
    client = stack.client
    count = h.args.idle_consumers
    topics = [h.topics.create(1, prefix="kcm-bench-idle") for _ in range(count)]
    ids: list[str] = []

    def stop_and_delete():
        for cid in ids:
            client.stop(cid)
        for cid in ids:
            client.delete(cid)
    h.cleanup.push(f"stop and delete {count} idle consumers", stop_and_delete)
    for n, topic in enumerate(topics):
        consumer = client.create_consumer({
            "bootstrap_servers": [h.env.bootstrap], "topic": topic, "consumer_group": unique("kcm-bench-idle"),
            "downstream_processors": [{"processor_type": "file_sink", "config": {"path": f"idle/{n}.log"}}]})
        ids.append(consumer["id"])
    started = time.monotonic()
    for cid in ids:
        client.start(cid)
    pids = wait_until(lambda: (p := _heartbeat_pids(h, ids)) and len(p) == count and p, 300, interval=0.5,
                      what=f"{count} workers consuming")
    all_up_s = time.monotonic() - started
    print(f"  {count} workers consuming {all_up_s:.1f} s after the first start; settling {SETTLE_SECONDS} s")
    time.sleep(SETTLE_SECONDS)

    rss = [rss_mb(pid) for pid in pids.values()]
    pss = [v for v in (pss_mb(pid) for pid in pids.values()) if v is not None]
    supervisor_pid = stack.supervisor.pid
    window = h.args.cpu_seconds
    # the window in thirds too: the spread shows whether a periodic reconcile dominates
    marks = [(time.monotonic(), cpu_seconds(supervisor_pid), sum(cpu_seconds(p) for p in pids.values()))]
    for _ in range(3):
        time.sleep(window / 3)
        marks.append((time.monotonic(), cpu_seconds(supervisor_pid), sum(cpu_seconds(p) for p in pids.values())))
    elapsed = marks[-1][0] - marks[0][0]
    sup_pct = (marks[-1][1] - marks[0][1]) / elapsed * 100
    workers_pct = (marks[-1][2] - marks[0][2]) / elapsed * 100
    thirds = [(b[1] - a[1]) / (b[0] - a[0]) * 100 for a, b in zip(marks, marks[1:], strict=False)]
    sup_rss = rss_mb(supervisor_pid)

    stop_started = time.monotonic()
    stop_and_delete()
    ids.clear()
    wait_until(lambda: all(process_gone(p) for p in pids.values()), 120, interval=0.2, what="idle workers gone")
    all_down_s = time.monotonic() - stop_started

    bare = _bare_idle(h, topics[:BARE_PROCESSES])
    per_worker, bare_rss = median(rss), median(bare)
    value = ratio(per_worker, bare_rss)
    figures = {"workers": count, "worker_rss_mb_median": per_worker, "worker_rss_mb_max": max(rss),
               "workers_rss_mb_total": sum(rss), "workers_pss_mb_total": sum(pss) if pss else None,
               "supervisor_cpu_pct_of_one_core": sup_pct,
               "supervisor_cpu_pct_thirds": thirds, "supervisor_rss_mb": sup_rss,
               "workers_cpu_pct_of_one_core_total": workers_pct, "bare_idle_consumer_rss_mb_median": bare_rss,
               "all_running_after_s": all_up_s, "all_stopped_after_s": all_down_s}
    rows = [["RSS per worker (median / max)", f"{fmt(per_worker, 1)} / {fmt(max(rss), 1)} MB"],
            ["RSS total over the workers", f"{fmt(sum(rss), 0)} MB"],
            ["PSS total over the workers (shared pages counted once)",
             f"{fmt(sum(pss), 0)} MB" if pss else "n/a"],
            ["bare idle consumer process RSS (median)", f"{fmt(bare_rss, 1)} MB"],
            ["worker RSS ÷ bare consumer RSS", fmt(value, 2)],
            [f"supervisor CPU over {window:g} s", f"{fmt(sup_pct, 2)} % of one core"],
            [f"supervisor CPU per {window / 3:g} s third", " / ".join(f"{fmt(t, 2)} %" for t in thirds)],
            ["supervisor RSS", f"{fmt(sup_rss, 1)} MB"],
            [f"all workers' CPU over {window:g} s", f"{fmt(workers_pct, 2)} % of one core"],
            [f"{count} starts -> all consuming", f"{fmt(all_up_s, 1)} s"],
            [f"{count} stops -> all gone", f"{fmt(all_down_s, 1)} s"]]
    return Result(
        name="footprint", title="Footprint", baseline="a bare idle confluent-kafka consumer process",
        params={"idle_consumers": count, "cpu_window_s": window, "settle_s": SETTLE_SECONDS,
                "bare_processes": BARE_PROCESSES},
        columns=["figure", "value"], rows=rows, figures=figures,
        runs=[{"worker_rss_mb": rss, "worker_pss_mb": pss, "bare_rss_mb": bare}], ratio=value,
        ratio_label="kcm worker RSS ÷ bare consumer RSS",
        targets=[Target(label="RSS per worker (median)", value=per_worker, op="<", target=60, unit=" MB"),
                 Target(label="supervisor CPU", value=sup_pct, op="<", target=2, unit=" % of a core")],
        notes=["RSS from /proc/<pid>/status VmRSS (MB, 10^6 bytes) with pids from the workers' heartbeat hashes; CPU from "
               "/proc/<pid>/stat utime+stime over the window. One sample of each: the memory of idle processes "
               "does not vary between runs the way throughput does."])
