"""What the dashboard's pages show, read through the API's service layer (api/services/): the views only render.

Nothing here decides a state, a verdict or a lag: those come from the status and monitoring services. This module
only folds their answers into rows and the series the charts draw. The charts draw the lag monitor's 15-minute
history (``lag_history_key``: one point per sample, written and bounded by supervisor/lag/store.py); the partition
trends come from its sliding window (``lag_window_key``, KCM_LAG_WINDOW samples).
"""
from __future__ import annotations

from types import SimpleNamespace

import redis

from api.auth.principal import Principal
from api.services.errors import Unavailable
from api.services.monitoring import MonitoringService
from api.services.recent_errors import RecentErrorsService
from schema import keys
from schema.health import Verdict
from schema.states import ProcessState
from schema.worker_metrics import COUNTERS
from supervisor.lag.store import decode_point, decode_sample, history_point

MAX_ROWS = 500  # the consumers page shows this many at most (the API's list pages through them all)
CHART_SECONDS = keys.LAG_HISTORY_SECONDS  # the lag chart's span: what the lag monitor's history keeps
# the consumers page sorts worst health first (a display order, not a rule: the verdicts are schema/health.py's)
VERDICT_ORDER = {Verdict.ERR: 0, Verdict.WARN: 1, Verdict.UNKNOWN: 2, Verdict.OK: 3, Verdict.STOPPED: 4}
FILTERS = ("status", "desired_state", "topic", "consumer_group")


def _row_of(item: dict) -> SimpleNamespace:
    """A list item as the status service reads a consumer (id, status, desired_state, generation, replicas)."""
    return SimpleNamespace(**{name: item[name] for name in ("id", "status", "desired_state", "generation",
                                                             "replicas")})


def live_status(kcm, item: dict) -> dict | None:
    """The consumer's status (api/services/status.py), or None when Redis cannot be read."""
    try:
        return kcm.status.status(_row_of(item))
    except Unavailable:
        return None


def summary(item: dict, status: dict | None) -> dict:
    """One consumer's line on the consumers page."""
    health = (status or {}).get("health") or {"verdict": Verdict.UNKNOWN.value, "reason": "Redis is unreachable"}
    lag = (status or {}).get("lag") or {}
    throughput = (status or {}).get("throughput") or {}
    replicas = (status or {}).get("replicas") or []
    return {
        "id": item["id"], "name": item.get("name"), "topic": item["topic"], "group": item["consumer_group"],
        "status": status["status"].value if status else item["status"],
        "state": status["state"].value if status else ProcessState.UNKNOWN.value,
        "desired_state": item["desired_state"],
        "verdict": health["verdict"], "verdict_reason": health.get("reason"),
        "lag_messages": lag.get("total_messages"), "lag_seconds": lag.get("max_seconds"),
        "messages_per_second": throughput.get("messages_per_second"),
        "replicas_up": sum(1 for r in replicas if r["state"] == ProcessState.RUNNING),
        "replicas_desired": item["replicas"],
    }


def consumer_rows(kcm, principal: Principal, filters: dict, search: str = "") -> list[dict]:
    """The principal's consumers (its scopes apply, as on GET /consumers/), filtered, worst health first."""
    chosen = {name: value for name, value in filters.items() if name in FILTERS and value}
    items, _total = kcm.consumers.page(chosen, 0, MAX_ROWS, scopes=principal.scopes)
    needle = search.strip().lower()
    if needle:
        items = [i for i in items if any(needle in (i.get(f) or "").lower() for f in ("name", "topic",
                                                                                     "consumer_group"))]
    rows = [summary(item, live_status(kcm, item)) for item in items]
    rows.sort(key=lambda r: (VERDICT_ORDER.get(r["verdict"], 2), -(r["lag_messages"] or 0), r["name"] or ""))
    return rows


def lag_reads(client: redis.Redis, consumer_id) -> tuple[list, list[dict]]:
    """The lag monitor's window of samples and its history points, oldest first, in one round trip (empty when
    Redis cannot be read or the monitor keeps none)."""
    pipe = client.pipeline(transaction=False)
    pipe.lrange(keys.lag_window_key(consumer_id), 0, -1)
    pipe.lrange(keys.lag_history_key(consumer_id), 0, -1)
    try:
        window, history = pipe.execute()
    except redis.RedisError:
        return [], []
    samples = [s for s in (decode_sample(_text(item)) for item in reversed(window)) if s is not None]
    points = [p for p in (decode_point(_text(item)) for item in reversed(history)) if p is not None]
    if points:
        points = [p for p in points if points[-1]["at"] - p["at"] <= CHART_SECONDS]
    return samples, points


def history_series(points: list[dict]) -> dict:
    """uPlot's columns from history points: the sample times, total lag, messages committed per second."""
    times = [p["at"] for p in points]
    span = round(times[-1] - times[0], 1) if len(times) > 1 else 0.0
    return {"times": times, "lag": [p["lag"] for p in points], "rate": [p["rate"] for p in points],
            "span_seconds": span}


def chart_series(samples: list) -> dict:
    """The same columns from a run of samples (a lag monitor older than the history keeps only its window):
    each sample becomes the point the monitor would have stored (supervisor/lag/store.py's ``history_point``)."""
    previous = [None, *samples][:len(samples)]
    return history_series([history_point(before, after) for before, after in zip(previous, samples, strict=True)])


def partition_trends(samples: list) -> dict[int, str]:
    """Per partition, how its lag moved over the window: 'rising', 'falling' or 'steady' (text, not colour)."""
    if len(samples) < 2:
        return {}
    first, last = samples[0].partitions, samples[-1].partitions
    trends = {}
    for partition, now in last.items():
        if partition not in first:
            continue
        change = now.lag_messages - first[partition].lag_messages
        trends[partition] = "rising" if change > 0 else "falling" if change < 0 else "steady"
    return trends


def consumer_detail(kcm, consumer_id) -> dict:
    """Everything the consumer page shows that changes while it is open (its live part)."""
    state_row = kcm.consumers.get_state(consumer_id)
    try:
        status = kcm.status.status(state_row)
        errors = RecentErrorsService(kcm.redis).recent(state_row.id, state_row.replicas)
    except Unavailable as exc:
        status, errors = None, [{"time": None, "replica": None, "processor_id": None, "kind": "unavailable",
                                 "message": exc.message}]
    samples, points = lag_reads(kcm.redis, state_row.id)
    processors: dict[str, dict] = {}  # processor id -> counters summed over replicas (latencies: the first's)
    for replica in (status or {}).get("replicas") or []:
        for counters in replica.get("processors") or []:
            total = processors.get(counters["processor_id"])
            if total is None:
                processors[counters["processor_id"]] = {**counters}
                continue
            for name in COUNTERS:
                total[name] = (total.get(name) or 0) + (counters.get(name) or 0)
    series = history_series(points) if points else chart_series(samples)
    return {"status": status, "errors": errors, "series": series,
            "trends": partition_trends(samples), "processor_counters": processors,
            "window": {"samples": len(samples), "interval": kcm.settings.lag_interval,
                       "configured": kcm.settings.lag_window},
            "history": {"points": len(series["times"]), "seconds": series["span_seconds"],
                        "chart_seconds": CHART_SECONDS}}


def supervisors(kcm) -> list[dict] | None:
    try:
        return MonitoringService(kcm.redis, kcm.engine).supervisors()
    except Unavailable:
        return None


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
