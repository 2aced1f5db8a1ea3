"""Pure figures helpers: medians, percentiles, ratios, rates. No I/O, unit-tested."""
from __future__ import annotations

import math
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    """The median; the mean of the two middle values for an even count. Raises on an empty sequence."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default 'linear' method), ``pct`` in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} outside [0, 100]")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either side is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def rate(count: int, seconds: float) -> float | None:
    """Events per second, None for a non-positive duration (nothing measurable)."""
    if seconds <= 0:
        return None
    return count / seconds


def meets(value: float | None, target: float, *, higher_is_better: bool) -> bool | None:
    """Whether ``value`` meets ``target``; None when there is no value to judge."""
    if value is None:
        return None
    return value >= target if higher_is_better else value < target


def summarize_latencies(samples_ms: Sequence[float]) -> dict:
    """p50/p95/p99/max in milliseconds of a latency sample, with its count."""
    if not samples_ms:
        return {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "count": len(samples_ms),
        "p50_ms": percentile(samples_ms, 50),
        "p95_ms": percentile(samples_ms, 95),
        "p99_ms": percentile(samples_ms, 99),
        "max_ms": float(max(samples_ms)),
    }
