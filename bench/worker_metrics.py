"""Benchmark: what the worker's pipeline figures cost. One kcm worker (``python -m workers``, file_sink raw, the same
pre-filled topic as ``throughput_file``) with ``KCM_WORKER_METRICS=true`` (the default: a ``perf_counter`` pair and
one bucket increment per processor per batch, the counters published by the heartbeat thread) against ``false``
(no timing), in the same run, sides alternating. Run directly, without the supervisor (``bench.sides``)."""
from __future__ import annotations

import time

from bench.results import Result
from bench.sides import compare_setting

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


def worker_metrics(h) -> Result:
    result = compare_setting(h, "worker_metrics", "Worker pipeline figures, file sink", "the same worker without "
                             "the per-batch timing (KCM_WORKER_METRICS=false)", TARGET, variable="KCM_WORKER_METRICS",
                             sides={f"metrics_{value}": value for value in SIDES}, slug="metrics",
                             figure="worker_metrics", params={"batch_size": "KCM_BATCH_SIZE default (1000)"},
                             notes=["The counters (batches, retries, dead-lettered, skipped) and their publication "
                                    "by the heartbeat thread are on in both sides; `true` adds the per-processor "
                                    "batch timing (one perf_counter pair and one bucket increment per processor "
                                    "per batch)."])
    cost = timing_cost_us()
    off_us = result.figures["metrics_false_cpu_us_per_message"]
    share = cost["timing_us_per_batch"] / (off_us * BATCH) if off_us else None
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
