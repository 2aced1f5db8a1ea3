"""A consumer's last errors: each replica's capped list (its worker writes it, workers/metrics.py), merged newest
first. The API only reads these keys; items never carry a payload and were scrubbed by the worker."""
from __future__ import annotations

import redis

from api.services.errors import Unavailable
from api.services.status import iso_utc
from schema import keys
from schema.worker_metrics import parse_error_item


class RecentErrorsService:
    def __init__(self, client: redis.Redis):
        self.client = client

    def recent(self, consumer_id, replicas: int) -> list[dict]:
        """The newest ``REPLICA_ERRORS_MAX`` errors over replicas 0..replicas-1, newest first."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for n in range(replicas):
                pipe.lrange(keys.replica_errors_key(consumer_id, n), 0, keys.REPLICA_ERRORS_MAX - 1)
            lists = pipe.execute() if replicas else []
        except redis.RedisError as exc:
            raise Unavailable(f"Redis is unreachable, the recent errors cannot be read ({type(exc).__name__})") from exc
        items = [item for raw_items in lists for raw in raw_items if (item := parse_error_item(_text(raw)))]
        items.sort(key=lambda item: item["time"], reverse=True)
        return [{**item, "time": iso_utc(str(item["time"]))} for item in items[:keys.REPLICA_ERRORS_MAX]]


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
