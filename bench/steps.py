"""Benchmarks of the steps (issue 16) and of CPU-bound scale-out (issue 14), on one pre-filled topic of JSON
orders (``bench.bare_transform.order_value``):

- ``throughput_json_transform``: kcm with a ``json_transform`` step before ``file_sink`` ÷ a bare confluent-kafka
  loop doing the same transform by hand (``bench.bare_transform``), same run, same messages; target >= 0.9.
- ``scaling_cpu``: the same consumer, replicas 2 ÷ replicas 1; its processor spends its CPU on a real transform
  (parse, compute, serialise), measured in-process beside the run (``transform_us_per_message``); target >= 1.7.
"""
from __future__ import annotations

import json
import time

from bench import kafka_util
from bench.bare_transform import CONFIG, mask_key, order_value, transformer
from bench.observe import FileProgress
from bench.results import Result
from bench.throughput import PARTITIONS, _compare, scaling_broker

DEFAULT_MESSAGES = 1_000_000
SCALING_MESSAGES = 2_000_000  # the second member joins in a second or two: a small part of a ~20 s window
_topics: dict[tuple[int, int], str] = {}


def _line_bytes() -> int:
    """Every transformed order has one length (checked on a spread of them): the file observer relies on it."""
    transform = transformer(mask_key())
    sizes = {len(transform(order_value(i))) for i in (0, 1, 7, 99, 12_345, 89_999, 90_000, 999_999)}
    if len(sizes) != 1:
        raise RuntimeError(f"transformed orders differ in length {sorted(sizes)}: the file observer cannot count them")
    return sizes.pop() + 1


def _step(h):
    """kcm's json_transform step for CONFIG, opened as a worker opens it: the mask key resolved under the settings
    the bench stack gives kcm."""
    from processors.context import ProcessorContext
    from processors.json_transform import JsonTransformStep
    from schema.settings import Settings

    context = ProcessorContext(settings=Settings.from_env(h.env.kcm_environ()), consumer_id="bench",
                               bootstrap_servers=h.env.bootstrap)
    step = JsonTransformStep(JsonTransformStep.validate_config(CONFIG), context=context)
    step.open()
    return step


def _check_same_output(h) -> None:
    """kcm's json_transform and the bare loop write the same bytes, or the ratio compares different work."""
    from processors.base import Record

    step, transform = _step(h), transformer(mask_key())
    for i in (0, 5, 77_777):
        [out] = step.transform([Record("t", 0, i, order_value(i))])
        if out.value() != transform(order_value(i)):
            raise RuntimeError(f"json_transform and the bare transform disagree on order {i}")


def transform_us_per_message(h, samples: int = 20_000) -> float:
    """CPU per message of the json_transform step alone (in this process, the worker's code path)."""
    from processors.base import Record

    step = _step(h)
    batch = [Record("t", 0, i, order_value(i)) for i in range(samples)]
    started = time.process_time()
    for start in range(0, samples, 1000):
        step.transform(batch[start:start + 1000])
    return (time.process_time() - started) / samples * 1e6


def _topic(h, messages: int) -> str:
    key = (id(h), messages)
    if key not in _topics:
        topic = h.topics.create(PARTITIONS)
        seconds = kafka_util.prefill(h.env.bootstrap, topic, messages, partitions=PARTITIONS, value_fn=order_value)
        print(f"pre-filled {topic}: {messages:,} JSON orders of ~{len(order_value(0))} B over {PARTITIONS} "
              f"partitions in {seconds:.1f} s")
        _topics[key] = topic
    return _topics[key]


def _processors(path, root) -> list[dict]:
    return [{"processor_type": "json_transform", "config": CONFIG},
            {"processor_type": "file_sink", "config": {"path": str(path.relative_to(root)), "format": "raw"}}]


def throughput_json_transform(h) -> Result:
    messages = h.args.messages or DEFAULT_MESSAGES
    _check_same_output(h)
    line = _line_bytes()
    topic = _topic(h, messages)
    step_us = transform_us_per_message(h)

    def bare():
        path = h.sink_path("bare-transform")
        return h.run_bare({"kind": "transform_file", "topic": topic, "path": str(path), "fsync": True},
                          FileProgress(str(path), line), messages, module="bench.bare_transform")

    def kcm():
        path = h.sink_path("kcm-transform")
        return h.run_kcm(topic, _processors(path, h.env.sink_root), FileProgress(str(path), line), messages)

    return _compare(h, "throughput_json_transform", "Throughput, json_transform step", "bare confluent-kafka loop "
                    "doing the same transform by hand, one write + fsync per batch", 0.90, messages,
                    {"bare": bare, "kcm": kcm}, {"bare": "bare transform", "kcm": "kcm json_transform"},
                    {"messages": messages, "partitions": PARTITIONS, "value_bytes": len(order_value(0)),
                     "output_bytes": line - 1, "transform_us_per_message": round(step_us, 2),
                     "config": json.dumps(CONFIG, separators=(",", ":"))},
                    ["Both sides parse each order, rename 2 fields, drop 2, add 2, cast 4, mask 4 (HMAC-SHA256 under a "
                     "key made up for the run, `${env:KCM_SECRET_BENCH_MASK_KEY}`) and write compact JSON lines "
                     "(checked byte for byte before the runs); kcm through its json_transform step and "
                     "file_sink raw, the bare loop with the same operations written out by hand and the same JSON "
                     "calls (the C scanner, a C encoder built once), so the ratio is kcm's own overhead.",
                     f"The json_transform step alone costs {step_us:.1f} µs CPU per message here (in-process)."])


def scaling_cpu(h) -> Result:
    h = h.scaling()  # a broker on Kafka's default group settings (bench.broker), unless --scaling-broker shared
    messages = h.args.messages or SCALING_MESSAGES
    line = _line_bytes()
    topic = _topic(h, messages)
    step_us = transform_us_per_message(h)

    def replicas(n):
        def side():
            path = h.sink_path(f"kcm-cpu-replicas{n}")
            return h.run_kcm(topic, _processors(path, h.env.sink_root), FileProgress(str(path), line), messages,
                             replicas=n)
        return side

    return _compare(h, "scaling_cpu", "Scaling a CPU-bound consumer, replicas 2 vs 1", "the same kcm consumer with "
                    "replicas: 1", 1.7, messages, {"replicas1": replicas(1), "replicas2": replicas(2)},
                    {"replicas1": "kcm replicas: 1", "replicas2": "kcm replicas: 2"},
                    {"messages": messages, "partitions": PARTITIONS, "value_bytes": len(order_value(0)),
                     "transform_us_per_message": round(step_us, 2), "processors": "json_transform + file_sink raw",
                     "broker": scaling_broker(h)},
                    [f"The processor's work is a real transform: json_transform (parse, rename, drop, add, cast, "
                     f"mask, serialise) at {step_us:.1f} µs CPU per message measured in-process, before file_sink.",
                     "One OS process per replica: two replicas use both cores where one is bound by its own "
                     "Python thread; Kafka, PostgreSQL and the other engineers' work share the same two cores "
                     "(see the machine CPU busy column). The steady column starts at half of the messages. On "
                     "the private broker (Kafka's default group.initial.rebalance.delay.ms) both replicas join the "
                     "group's first generation; on the shared one (--scaling-broker shared, 0) the second one's "
                     "join is inside the window (bench/broker.py)."],
                    steady_from=0.5)
