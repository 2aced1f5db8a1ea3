"""The pure helpers behind every benchmark figure: medians, percentiles, ratios, verdicts."""
from __future__ import annotations

import pytest

from bench.stats import median, meets, percentile, rate, ratio, summarize_latencies


def test_median_of_odd_and_even_counts():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert median([7.5]) == 7.5


def test_median_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        median([])


def test_percentile_interpolates_linearly_like_numpy():
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([10, 20], 25) == pytest.approx(12.5)


def test_percentile_rejects_out_of_range_and_empty():
    with pytest.raises(ValueError):
        percentile([1, 2], 101)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_ratio_is_none_when_a_side_is_missing_or_zero():
    assert ratio(90, 100) == pytest.approx(0.9)
    assert ratio(None, 100) is None
    assert ratio(90, None) is None
    assert ratio(90, 0) is None


def test_rate_needs_a_positive_duration():
    assert rate(1000, 2.0) == 500
    assert rate(1000, 0) is None


def test_meets_in_both_directions_and_unmeasured():
    assert meets(0.91, 0.90, higher_is_better=True) is True
    assert meets(0.89, 0.90, higher_is_better=True) is False
    assert meets(24.9, 25, higher_is_better=False) is True
    assert meets(25, 25, higher_is_better=False) is False  # "< 25 ms" is strict
    assert meets(None, 25, higher_is_better=False) is None


def test_latency_summary():
    summary = summarize_latencies([float(x) for x in range(1, 101)])
    assert summary["count"] == 100
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["max_ms"] == 100
    assert summarize_latencies([])["p99_ms"] is None
