"""The workers' per-processor figures as the API shows them: the status's ``processors`` and /metrics' processor
series (docs/monitoring.md). The layout and the percentile estimate are schema/worker_metrics.py's."""
from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from schema.worker_metrics import BATCH_LATENCY_BUCKETS, COUNTERS, parse_processors, quantile

LABELS = ["consumer_id", "processor"]
BOUNDS = [*(repr(float(b)) for b in BATCH_LATENCY_BUCKETS), "+Inf"]


def processor_status(raw: str | None) -> list[dict] | None:
    """One replica's processors from its heartbeat's ``processors`` field; None when it published none."""
    parsed = parse_processors(raw)
    if not parsed:
        return None
    return [{"processor_id": p["id"], "processor_type": p["type"], **{name: p[name] for name in COUNTERS},
             "batch_latency_p50_seconds": _rounded(quantile(0.5, p["buckets"])) if p["buckets"] else None,
             "batch_latency_p99_seconds": _rounded(quantile(0.99, p["buckets"])) if p["buckets"] else None}
            for p in parsed]


def _rounded(value: float | None) -> float | None:
    return round(value, 6) if value is not None else None


class ProcessorSeries:
    """Sums the live replicas' processor figures per (consumer, processor), then yields the metric families."""

    def __init__(self):
        self._totals: dict[tuple[str, str], dict] = {}

    def add(self, consumer_id: str, raw: str | None) -> None:
        for p in parse_processors(raw):
            total = self._totals.setdefault((consumer_id, p["id"]), {
                **{name: 0 for name in COUNTERS}, "buckets": None, "sum": 0.0})
            for name in COUNTERS:
                total[name] += p[name]
            if p["buckets"] is not None:
                total["buckets"] = [a + b for a, b in zip(total["buckets"] or [0] * len(BOUNDS), p["buckets"],
                                                          strict=True)]
                total["sum"] += p["sum"]

    def families(self):
        duration = HistogramMetricFamily(
            "kcm_processor_batch_duration_seconds",
            "Seconds a processor took to accept a batch (process + flush, retries included), summed over the "
            "consumer's live replicas", labels=LABELS)
        counters = {name: CounterMetricFamily(f"kcm_processor_{name}", help_text, labels=LABELS)
                    for name, help_text in (
                        ("batches", "Batches the processor accepted, summed over the live replicas"),
                        ("retries", "Retries of a failing batch, summed over the live replicas"),
                        ("dead_lettered", "Messages the processor dead-lettered, summed over the live replicas"),
                        ("skipped", "Messages the processor skipped (on_error=skip), summed over the live replicas"),
                        ("dropped", "Messages a step let not through (a filter's non-matches), summed over the live "
                                    "replicas"))}
        for (consumer_id, processor), total in sorted(self._totals.items()):
            labels = [consumer_id, processor]
            for name in COUNTERS:
                counters[name].add_metric(labels, total[name])
            if total["buckets"] is not None:
                duration.add_metric(labels, list(zip(BOUNDS, total["buckets"], strict=True)), total["sum"])
        yield duration
        yield from counters.values()
