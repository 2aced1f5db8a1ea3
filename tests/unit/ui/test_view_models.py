"""The dashboard's pure folding of service answers: chart series and lag trends from the lag monitor's samples,
a consumer's list line from its status, the secret a session is signed with, form error messages."""
from __future__ import annotations

from types import SimpleNamespace

from fakeredis import FakeRedis

from api.ui import data
from api.ui.forms import _messages
from api.ui.session import session_secret
from schema.health import PartitionSample, Sample
from schema.states import ConsumerStatus, ProcessState


def sample(at: float, **partitions: tuple[int | None, int, int]) -> Sample:
    return Sample(at=at, partitions={int(p[1:]): PartitionSample(committed=c, high_watermark=h, lag_messages=lag,
                                                                 lag_seconds=None)
                                     for p, (c, h, lag) in partitions.items()})


def test_chart_series_are_total_lag_and_committed_messages_per_second():
    samples = [sample(100.0, p0=(None, 40, 40), p1=(0, 10, 10)),
               sample(102.0, p0=(20, 40, 20), p1=(4, 10, 6)),
               sample(104.0, p0=(40, 40, 0), p1=(10, 10, 0))]
    series = data.chart_series(samples)
    assert series["times"] == [100.0, 102.0, 104.0]
    assert series["lag"] == [50, 26, 0]
    assert series["rate"] == [None, 12.0, 13.0]  # (20 + 4) / 2 s, then (20 + 6) / 2 s
    assert series["span_seconds"] == 4.0


def test_a_rewound_offset_counts_no_negative_throughput_and_no_samples_draw_nothing():
    rewound = [sample(0.0, p0=(50, 60, 10)), sample(5.0, p0=(10, 60, 50))]
    assert data.chart_series(rewound)["rate"] == [None, 0.0]
    assert data.chart_series([]) == {"times": [], "lag": [], "rate": [], "span_seconds": 0.0}


def test_the_trend_is_spelled_out_per_partition_over_the_window():
    samples = [sample(0.0, p0=(0, 10, 10), p1=(0, 5, 5), p2=(0, 1, 1)),
               sample(1.0, p0=(0, 20, 20), p1=(5, 5, 0), p2=(1, 2, 1), p3=(0, 1, 1))]
    assert data.partition_trends(samples) == {0: "rising", 1: "falling", 2: "steady"}  # p3: no history yet
    assert data.partition_trends(samples[:1]) == {}


def test_a_list_line_counts_running_replicas_and_keeps_the_lag_and_verdict():
    item = {"id": "c1", "name": "orders", "topic": "t", "consumer_group": "g", "status": "ACTIVE",
            "desired_state": "running", "replicas": 3}
    status = {"status": ConsumerStatus.ACTIVE, "state": ProcessState.STARTING,
              "replicas": [{"state": ProcessState.RUNNING}, {"state": ProcessState.STARTING},
                           {"state": ProcessState.RUNNING}],
              "health": {"verdict": "WARN", "reason": "lag grows"},
              "lag": {"total_messages": 12, "max_seconds": 3.5}, "throughput": {"messages_per_second": 7.25}}
    line = data.summary(item, status)
    assert (line["replicas_up"], line["replicas_desired"]) == (2, 3)
    assert (line["verdict"], line["lag_messages"], line["lag_seconds"], line["messages_per_second"]) == \
        ("WARN", 12, 3.5, 7.25)
    unreadable = data.summary(item, None)
    assert unreadable["verdict"] == "UNKNOWN" and unreadable["verdict_reason"] == "Redis is unreachable"
    assert unreadable["state"] == "UNKNOWN" and unreadable["lag_messages"] is None


def test_the_session_secret_is_the_setting_or_a_random_one_per_process():
    assert session_secret(SimpleNamespace(ui_secret_key="s" * 40)) == ("s" * 40, True)
    first, configured = session_secret(SimpleNamespace())
    assert not configured and len(first) >= 40 and session_secret(SimpleNamespace())[0] != first


def test_form_errors_flatten_marshmallows_per_item_messages():
    assert _messages(["Missing data."]) == ["Missing data."]
    assert _messages({0: ["bad pattern"], 2: ["too long"]}) == ["bad pattern", "too long"]
    assert _messages("plain") == ["plain"]


def test_the_consumers_list_puts_the_worst_health_first_then_the_largest_lag():
    items = [{"id": name, "name": name, "topic": "t", "consumer_group": "g", "status": "ACTIVE",
              "desired_state": "running", "replicas": 1, "generation": 1} for name in ("ok", "err", "warn", "big")]
    verdicts = {"ok": ("OK", 5), "err": ("ERR", 0), "warn": ("WARN", 1), "big": ("OK", 900)}

    def status(row):
        verdict, lag = verdicts[row.id]
        return {"status": ConsumerStatus.ACTIVE, "state": ProcessState.RUNNING, "replicas": [],
                "health": {"verdict": verdict, "reason": ""}, "lag": {"total_messages": lag}, "throughput": None}

    seen = {}

    def page(filters, first, size, scopes=None):
        seen.update(filters=filters, scopes=scopes)
        return items, len(items)

    kcm = SimpleNamespace(consumers=SimpleNamespace(page=page), status=SimpleNamespace(status=status))
    principal = SimpleNamespace(scopes=("g*",))
    rows = data.consumer_rows(kcm, principal, {"topic": "t", "name": "ignored", "status": None})
    assert [r["name"] for r in rows] == ["err", "warn", "big", "ok"]
    assert seen == {"filters": {"topic": "t"}, "scopes": ("g*",)}  # the principal's scopes reach the query
    assert [r["name"] for r in data.consumer_rows(kcm, principal, {}, search="BI")] == ["big"]


def test_a_processors_counters_are_summed_over_the_replicas():
    counters = {"processor_id": "p1", "processor_type": "file_sink", "batches": 3, "retries": 1, "dead_lettered": 0,
                "skipped": 2, "batch_latency_p50_seconds": 0.01, "batch_latency_p99_seconds": 0.02}
    status = {"replicas": [{"processors": [counters]}, {"processors": [{**counters, "batches": 4, "skipped": 0}]},
                           {"processors": None}]}
    kcm = SimpleNamespace(
        consumers=SimpleNamespace(get_state=lambda cid: SimpleNamespace(id=cid, replicas=3)),
        status=SimpleNamespace(status=lambda row: status), redis=FakeRedis(),
        settings=SimpleNamespace(lag_interval=5.0, lag_window=10))
    detail = data.consumer_detail(kcm, "c1")
    assert detail["processor_counters"]["p1"]["batches"] == 7 and detail["processor_counters"]["p1"]["skipped"] == 2
    assert detail["window"] == {"samples": 0, "interval": 5.0, "configured": 10} and detail["errors"] == []
