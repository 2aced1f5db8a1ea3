"""Benchmark: what the worker's pipeline figures cost. One kcm worker (``python -m workers``, file_sink raw, the same
pre-filled topic as ``throughput_file``) with ``KCM_WORKER_METRICS=true`` (the default: a ``perf_counter`` pair and
one bucket increment per processor per batch, the counters published by the heartbeat thread) against ``false``
(no timing), in the same run, sides alternating. Run directly, without the supervisor, like ``commit_interval``."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

from bench.harness import CpuWindow, _window_figures
from bench.kafka_util import unique
from bench.observe import FileProgress, watch
from bench.procfs import busy_percent, cpu_snapshot
from bench.results import Result
from bench.stack import ROOT
from bench.throughput import PARTITIONS, SIZE, _compare
from schema.spec import SPEC_ENV, ProcessorSpec, WorkerSpec

SIDES = ("false", "true")  # the baseline first: the ratio is metrics on over metrics off
TARGET = 0.97  # throughput drop of at most 3 %
DELIVERIES = 200_000  # in-process deliver() calls per side of the timing-cost measurement
BATCH = 1000  # KCM_BATCH_SIZE's default


def timing_cost_us() -> dict:
    """The timing's own cost, in-process, without Kafka or the disk (so a busy machine barely moves it): the time
    ``Pipeline.deliver`` takes for one batch to a no-op processor, timing off and on, best of three each."""
    from processors.base import BaseProcessor, Record
    from processors.pipeline import Pipeline
    from schema.spec import ProcessorSpec

    class Nop(BaseProcessor):
        def process(self, batch):
            pass

        def flush(self):
            pass

    class Context:
        consumer_id = "bench"

        def __init__(self, timed: bool):
            self.settings = type("Settings", (), {"worker_metrics": timed})()

    batch = [Record("t", 0, i, b"v") for i in range(BATCH)]
    best = {}
    for timed in (False, True):
        pipeline = Pipeline([(ProcessorSpec(id="p", processor_type="nop"), Nop({}))], context=Context(timed))
        samples = []
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(DELIVERIES):
                pipeline.deliver(batch)
            samples.append((time.perf_counter() - started) / DELIVERIES * 1e6)
        best[timed] = min(samples)
    return {"deliver_us_timing_off": round(best[False], 3), "deliver_us_timing_on": round(best[True], 3),
            "timing_us_per_batch": round(best[True] - best[False], 3)}


def run_worker(h, topic: str, path, total: int, worker_metrics: str) -> dict:
    """One worker consuming ``topic`` into ``path`` until the file holds every message, timed from outside."""
    group = unique("kcm-bench-metrics")
    spec = WorkerSpec(consumer_id=str(uuid.uuid4()), replica=0, generation=1, bootstrap_servers=h.env.bootstrap,
                      topic=topic, group_id=group, processors=(ProcessorSpec(
                          id="file", processor_type="file_sink",
                          config={"path": str(path.relative_to(h.env.sink_root)), "format": "raw"}),))
    env = h.env.kcm_environ(KCM_WORKER_METRICS=worker_metrics, **{SPEC_ENV: spec.to_json()})
    log_path = h.env.workdir / f"worker-metrics-{worker_metrics}-{spec.consumer_id[:8]}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "workers"], env=env, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        cpu = CpuWindow(lambda: [proc.pid])
        before = cpu_snapshot()
        window = watch(FileProgress(str(path), SIZE + 1), total, alive=lambda: proc.poll() is None,
                       on_first=cpu.first)
        cpu.last()
        machine_busy = busy_percent(before, cpu_snapshot())
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code != 0:
        raise RuntimeError(f"worker exited {code}: {log_path.read_text()[-2000:]}")
    committed = h.offsets.wait_committed(group, topic, timeout=15)
    return {**_window_figures(window), **cpu.figures(window), "machine_busy_pct": machine_busy, "group": group,
            "worker_metrics": worker_metrics, "offsets_committed": committed}


def worker_metrics(h) -> Result:
    messages = h.args.messages or 1_000_000
    topic = h.prefilled_topic(messages, PARTITIONS, SIZE)

    def side(value: str):
        def run():
            return run_worker(h, topic, h.sink_path(f"metrics-{value}"), messages, value)
        return run

    sides = {f"metrics_{value}": side(value) for value in SIDES}
    labels = {f"metrics_{value}": f"KCM_WORKER_METRICS={value}" for value in SIDES}
    result = _compare(h, "worker_metrics", "Worker pipeline figures, file sink", "the same worker without the "
                    "per-batch timing (KCM_WORKER_METRICS=false)", TARGET, messages, sides, labels,
                    {"messages": messages, "partitions": PARTITIONS, "value_bytes": SIZE, "format": "raw",
                     "fsync": "every batch (file_sink default)", "batch_size": "KCM_BATCH_SIZE default (1000)"},
                    ["Both sides are `python -m workers` with the same spec, started directly (no supervisor); "
                     "only KCM_WORKER_METRICS differs. Timed like throughput_file: from the first poll that sees "
                     "lines in the file to the first that sees all of them.",
                     "The counters (batches, retries, dead-lettered, skipped) and their publication by the "
                     "heartbeat thread are on in both sides; `true` adds the per-processor batch timing "
                     "(one perf_counter pair and one bucket increment per processor per batch)."])
    cost = timing_cost_us()
    per_message_us = {side: result.figures[f"{side}_cpu_us_per_message"] for side in sides}
    share = cost["timing_us_per_batch"] / (per_message_us["metrics_false"] * BATCH) if per_message_us[
        "metrics_false"] else None
    result.figures.update(cost, timing_share_of_batch_cpu=share)
    result.rows.append([f"timing cost in-process: µs per batch of {BATCH} (one processor)",
                        f"{cost['timing_us_per_batch']:.3f}", f"deliver() {cost['deliver_us_timing_off']:.3f} off / "
                        f"{cost['deliver_us_timing_on']:.3f} on", "", "",
                        f"{share:.5%} of the batch" if share is not None else "", ""])
    result.notes.append(f"The in-process row times Pipeline.deliver for a batch of {BATCH} to a no-op processor "
                        f"({DELIVERIES:,} calls, best of three, timing off then on): the timing's own cost, which "
                        "a shared machine's noise cannot hide or inflate. Its share is of the consumer CPU a batch "
                        "costs with the timing off.")
    return result
