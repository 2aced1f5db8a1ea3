"""The 15-minute lag history the lag monitor keeps for the dashboard's chart (supervisor/lag/store.py writes it,
api/ui/data.py reads it): one point per sample, bounded, expiring, gone with its consumer. Redis is fakeredis."""
from __future__ import annotations

import json

from fakeredis import FakeRedis

from api.ui import data
from schema import keys
from schema.health import PartitionSample, Sample
from supervisor.lag.store import LagStore, history_point

HEALTH = {"verdict": "OK", "reason": "", "since": 0.0}


def sample(at: float, committed: int, lag: int) -> Sample:
    return Sample(at=at, partitions={0: PartitionSample(committed, committed + lag, lag, 0.0),
                                     1: PartitionSample(committed, committed + lag, lag, 0.0)})


def test_a_point_is_the_total_lag_and_the_messages_committed_per_second_since_the_previous_sample():
    assert history_point(None, sample(100.0, 0, 30)) == {"at": 100.0, "lag": 60, "rate": None}
    assert history_point(sample(100.0, 0, 30), sample(104.0, 10, 20)) == {"at": 104.0, "lag": 40, "rate": 5.0}
    assert history_point(sample(100.0, 50, 0), sample(105.0, 10, 40))["rate"] == 0.0  # a rewind: no negative rate


def test_the_history_keeps_fifteen_minutes_of_points_across_a_monitor_restart_and_expires():
    client = FakeRedis()
    store = LagStore(client, interval=60.0, window=4)  # 60 s apart: 16 points span the 15 minutes
    assert store.history_points == 16
    for i in range(40):
        store.read(["c1"])
        store.write([("c1", sample(1000.0 + 60 * i, 10 * i, 5), None, HEALTH, None)])
    points = [json.loads(p) for p in client.lrange(keys.lag_history_key("c1"), 0, -1)]
    assert len(points) == 16 and points[0]["at"] == 1000.0 + 60 * 39 and points[-1]["at"] == 1000.0 + 60 * 24
    assert all(p["rate"] == round(20 / 60, 2) and p["lag"] == 10 for p in points)  # 2 partitions x 10 / 60 s
    assert 0 < client.ttl(keys.lag_history_key("c1")) <= keys.LAG_HISTORY_SECONDS + 60
    restarted = LagStore(client, interval=60.0, window=4)  # the window in Redis is its first point's base
    restarted.read(["c1"])
    restarted.write([("c1", sample(1000.0 + 60 * 40, 400, 5), None, HEALTH, None)])
    assert json.loads(client.lindex(keys.lag_history_key("c1"), 0))["rate"] == round(20 / 60, 2)
    restarted.write([("c1", None, None, HEALTH, None)])  # no sample (the cluster unreadable): no point
    assert client.llen(keys.lag_history_key("c1")) == 16
    restarted.forget({"c1"})
    assert not client.exists(keys.lag_history_key("c1"))


def test_the_dashboard_draws_the_history_within_fifteen_minutes_and_falls_back_to_the_window():
    client = FakeRedis()
    store = LagStore(client, interval=5.0, window=4)
    for i in range(8):
        store.read(["c1"])
        store.write([("c1", sample(1000.0 + 5 * i, 10 * i, 40 - 5 * i), None, HEALTH, None)])
    client.rpush(keys.lag_history_key("c1"), json.dumps({"at": 1000.0 - 901, "lag": 1, "rate": 1.0}), "garbled")
    samples, points = data.lag_reads(client, "c1")
    assert len(samples) == 4 and [p["at"] for p in points] == [1000.0 + 5 * i for i in range(8)]
    series = data.history_series(points)
    assert series["lag"] == [80 - 10 * i for i in range(8)] and series["rate"] == [None] + [4.0] * 7
    assert series["span_seconds"] == 35.0
    client.delete(keys.lag_history_key("c1"))  # a monitor older than the history keeps only its window
    samples, points = data.lag_reads(client, "c1")
    assert points == [] and data.chart_series(samples)["times"] == [1020.0, 1025.0, 1030.0, 1035.0]
