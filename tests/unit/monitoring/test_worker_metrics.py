"""Pure logic of the worker's published figures: the latency buckets, the percentile estimate (PromQL's
histogram_quantile), the pipeline's O(1) per-batch timing, the capped error log and what the API derives."""
from __future__ import annotations

import json

import fakeredis
import pytest

from api.services.worker_metrics import ProcessorSeries, processor_status
from processors.base import BaseProcessor, Record, RetriableError
from processors.pipeline import Pipeline
from processors.policy import DeliveryPolicy
from schema import keys
from schema.spec import ProcessorSpec
from schema.worker_metrics import (
    BATCH_LATENCY_BUCKETS,
    BatchLatency,
    parse_error_item,
    parse_processors,
    quantile,
    valid_buckets,
)
from workers.heartbeat import WorkerStatus
from workers.metrics import ErrorLog


def histogram(*seconds: float) -> list[int]:
    latency = BatchLatency()
    for value in seconds:
        latency.observe(value)
    return latency.published()["buckets"]


def test_an_observation_lands_in_the_first_bucket_whose_bound_it_does_not_exceed():
    cumulative = histogram(0.001, 0.0011, 0.05, 100.0)
    bounds = dict(zip([*BATCH_LATENCY_BUCKETS, "+Inf"], cumulative, strict=True))
    assert bounds[0.001] == 1  # le is inclusive, as in Prometheus
    assert bounds[0.0025] == 2 and bounds[0.05] == 3 and bounds[60.0] == 3 and bounds["+Inf"] == 4
    assert cumulative == sorted(cumulative)


def test_quantiles_interpolate_within_the_bucket_like_histogram_quantile():
    # 100 batches: 50 in (0.01, 0.025], 49 in (0.025, 0.05], 1 in (0.5, 1]
    cumulative = histogram(*([0.02] * 50 + [0.04] * 49 + [0.7]))
    assert quantile(0.5, cumulative) == pytest.approx(0.025)  # rank 50 is the top of the (0.01, 0.025] bucket
    assert quantile(0.25, cumulative) == pytest.approx(0.01 + 0.015 * 25 / 50)
    assert quantile(0.99, cumulative) == pytest.approx(0.05)
    assert quantile(0.995, cumulative) == pytest.approx(0.5 + 0.5 * 0.5)
    assert quantile(0.99, cumulative) >= quantile(0.5, cumulative)


def test_quantile_edges_no_batch_first_bucket_and_beyond_the_last_bound():
    assert quantile(0.5, histogram()) is None
    assert quantile(0.5, histogram(0.0005, 0.0005)) == pytest.approx(0.0005)  # from 0 within the first bucket
    assert quantile(0.99, histogram(120.0)) == BATCH_LATENCY_BUCKETS[-1]  # +Inf: the highest finite bound


def test_only_todays_layout_of_non_decreasing_counts_is_accepted():
    good = histogram(0.1)
    assert valid_buckets(good) == good
    assert valid_buckets(good[:-1]) is None
    assert valid_buckets([*good[:-1], 0]) is None  # decreasing: garbled
    assert valid_buckets("nope") is None


class Steady(BaseProcessor):
    def __init__(self, fail_first: int = 0):
        super().__init__({})
        self.fail_first = fail_first

    def process(self, batch):
        if self.fail_first:
            self.fail_first -= 1
            raise RetriableError("down")

    def flush(self):
        pass


def _pipeline(processor, **policy):
    spec = ProcessorSpec(id="p1", processor_type="steady", on_error=policy.get("on_error", "retry"))
    return Pipeline([(spec, processor)], [DeliveryPolicy(retry_backoff=0, **policy)], consumer_id="c")


def test_the_pipeline_times_every_delivered_batch_once_per_processor_and_publishes_it():
    pipeline = _pipeline(Steady(fail_first=2), max_retries=5)
    recorded = []
    pipeline.record_errors_with(lambda processor, kind, text: recorded.append((processor, kind)))
    for offset in range(3):
        pipeline.deliver([Record("t", 0, offset * 10 + i, b"v") for i in range(10)])
    [published] = pipeline.published_stats()
    assert published["id"] == "p1" and published["type"] == "steady"
    assert (published["batches"], published["retries"], published["skipped"]) == (3, 2, 0)
    assert published["latency"]["buckets"][-1] == 3 and published["latency"]["sum"] >= 0
    assert recorded == [("p1", "retry"), ("p1", "retry")]
    [shown] = processor_status(json.dumps([published]))
    assert shown["batches"] == 3 and shown["retries"] == 2
    assert 0 <= shown["batch_latency_p50_seconds"] <= shown["batch_latency_p99_seconds"]


def test_skipped_messages_are_counted_and_recorded_as_errors():
    class Poisoned(Steady):
        def process(self, batch):
            if any(m.offset() == 4 for m in batch):
                raise RetriableError("poison at 4")

    pipeline = _pipeline(Poisoned(), on_error="skip", max_retries=1)
    recorded = []
    pipeline.record_errors_with(lambda processor, kind, text: recorded.append((kind, text)))
    pipeline.deliver([Record("t", 0, i, b"secret-payload") for i in range(8)])
    assert pipeline.stats["p1"]["skipped"] == 1
    kinds = [kind for kind, _ in recorded]
    assert kinds == ["retry", "batch_failed", "skipped"]
    assert "t/0@4" in recorded[-1][1] and all("secret-payload" not in text for _, text in recorded)


def test_with_worker_metrics_off_nothing_is_timed_but_the_counters_are_kept():
    class Off:
        worker_metrics = False

    class Context:
        settings = Off()
        consumer_id = "c"

    spec = ProcessorSpec(id="p1", processor_type="steady")
    pipeline = Pipeline([(spec, Steady())], context=Context())
    pipeline.deliver([Record("t", 0, 0, b"v")])
    [published] = pipeline.published_stats()
    assert published["batches"] == 1 and published["latency"] is None
    assert pipeline.latency["p1"].counts == [0] * (len(BATCH_LATENCY_BUCKETS) + 1)
    [shown] = processor_status(json.dumps([published]))
    assert shown["batch_latency_p50_seconds"] is None and shown["batches"] == 1


def test_replicas_sum_bucket_by_bucket_per_consumer_and_processor():
    one = {"id": "p1", "type": "x", "batches": 2, "retries": 1, "dead_lettered": 0, "skipped": 3,
           "latency": {"buckets": histogram(0.02, 0.2), "sum": 0.22}}
    two = {**one, "batches": 1, "retries": 0, "skipped": 0, "latency": {"buckets": histogram(0.02), "sum": 0.02}}
    series = ProcessorSeries()
    series.add("c1", json.dumps([one]))
    series.add("c1", json.dumps([two]))
    series.add("c1", "garbled")
    families = {f.name: f for f in series.families()}
    duration = families["kcm_processor_batch_duration_seconds"]
    samples = {(s.name, s.labels.get("le")): s.value for s in duration.samples}
    assert samples[("kcm_processor_batch_duration_seconds_bucket", "0.025")] == 2
    assert samples[("kcm_processor_batch_duration_seconds_bucket", "+Inf")] == 3
    assert samples[("kcm_processor_batch_duration_seconds_count", None)] == 3
    assert samples[("kcm_processor_batch_duration_seconds_sum", None)] == pytest.approx(0.24)
    assert families["kcm_processor_batches"].samples[0].value == 3
    assert families["kcm_processor_skipped"].samples[0].value == 3


def test_garbled_published_figures_are_left_out_not_a_crash():
    assert parse_processors("not json") == [] and parse_processors(json.dumps({"id": "x"})) == []
    [entry] = parse_processors(json.dumps([{"id": "p", "batches": "many", "latency": {"buckets": [1, 0]}}, 7]))
    assert entry["batches"] == 0 and entry["buckets"] is None
    assert processor_status(None) is None
    assert parse_error_item("{}") is None and parse_error_item("[") is None


def test_the_error_log_keeps_the_newest_twenty_redacted_and_survives_a_failed_write():
    times = iter(range(100))
    log = ErrorLog(clock=lambda: float(next(times)))
    log.redact = lambda text: text.replace("hunter2", "${env:KCM_SECRET_PW}")
    for n in range(25):
        log.record("kafka", f"error {n} with hunter2")
    taken = log.take()
    assert len(taken) == keys.REPLICA_ERRORS_MAX and taken[0][3] == "error 5 with ${env:KCM_SECRET_PW}"
    log.record("exit", "x" * 2000, processor=None)
    log.restore(taken)  # the write failed: the older ones come back ahead of the newer
    again = log.take()
    assert [entry[3][:8] for entry in again][-2:] == ["error 24", "x" * 8] and len(again[-1][3]) == 500
    with pytest.raises(ValueError):
        log.record("whatever", "text")

    client = fakeredis.FakeRedis(decode_responses=True)
    pipe = client.pipeline()
    ErrorLog.push(pipe, "k", 3, again)
    ErrorLog.push(pipe, "k", 3, again[:5])
    pipe.execute()
    items = [parse_error_item(raw) for raw in client.lrange("k", 0, -1)]
    assert len(items) == keys.REPLICA_ERRORS_MAX and 0 < client.ttl("k") <= keys.REPLICA_ERRORS_TTL
    assert items[0]["message"].startswith("error 10") and items[0]["replica"] == 3  # newest first
    assert [i["time"] for i in items[5:]] == sorted((i["time"] for i in items[5:]), reverse=True)


def test_the_heartbeat_field_carries_the_attached_pipeline_figures():
    status = WorkerStatus(pid=1, host="h", generation=1)
    assert json.loads(status.fields()["processors"]) == []
    pipeline = _pipeline(Steady())
    status.processors = pipeline.published_stats
    pipeline.deliver([Record("t", 0, 0, b"v")])
    assert parse_processors(status.fields()["processors"])[0]["batches"] == 1
