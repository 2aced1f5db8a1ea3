"""Webhook alerts without Prometheus (``KCM_ALERT_WEBHOOK_URL``): which changes are alerted, and the
enqueueing of each alert as an rq job on ``schema.keys.ALERT_QUEUE`` (delivered by supervisor/lag/webhook.py).

Alerted: a consumer's verdict entering or leaving ERR (a partition that is STOP, STALL or REWIND makes the
consumer ERR), and a replica entering FATAL. What was notified is remembered in ``alerted_key`` and updated in
the same Redis transaction that enqueues the alerts, so a change is sent once, also across monitor restarts.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from rq import Queue, Retry

from schema import keys
from schema.health import Verdict

ALERT_VERDICTS = frozenset({Verdict.ERR.value})
MEMORY_TTL = 86_400.0  # refreshed every sample: a monitor down for a day alerts an ongoing ERR again
JOB_TIMEOUT = 60
RESULT_TTL = 3_600
FAILURE_TTL = 7 * 86_400  # an alert that exhausted its retries stays in rq's failed registry for a week


@dataclass(frozen=True)
class Alerted:
    """What the webhook was last told about a consumer."""
    verdict: str | None = None
    fatal: frozenset[int] = field(default_factory=frozenset)

    def encode(self) -> str:
        return json.dumps({"verdict": self.verdict, "fatal": sorted(self.fatal)}, separators=(",", ":"))

    @classmethod
    def decode(cls, raw) -> Alerted:
        try:
            data = json.loads(raw.decode() if isinstance(raw, bytes) else raw) if raw else {}
            return cls(verdict=data.get("verdict"), fatal=frozenset(int(n) for n in data.get("fatal") or ()))
        except (ValueError, TypeError, AttributeError):
            return cls()


@dataclass(frozen=True)
class ConsumerFacts:
    consumer_id: str
    topic: str
    consumer_group: str
    verdict: str
    reason: str
    fatal: dict[int, str]  # FATAL replica -> its last error


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="milliseconds")


def decide(facts: ConsumerFacts, before: Alerted, now: float) -> tuple[list[dict], Alerted]:
    """The alerts this sample raises for one consumer and what is remembered afterwards (pure)."""
    common = {"consumer_id": facts.consumer_id, "topic": facts.topic, "consumer_group": facts.consumer_group,
              "at": _iso(now)}
    alerts = []
    was, now_alerting = before.verdict in ALERT_VERDICTS, facts.verdict in ALERT_VERDICTS
    if was != now_alerting:
        alerts.append({"alert_id": uuid.uuid4().hex, "kind": "consumer_verdict",
                       "status": "firing" if now_alerting else "resolved", **common, "verdict": facts.verdict,
                       "previous_verdict": before.verdict, "reason": facts.reason})
    for replica in sorted(set(facts.fatal) - before.fatal):
        alerts.append({"alert_id": uuid.uuid4().hex, "kind": "replica_fatal", "status": "firing", **common,
                       "replica": replica, "reason": f"replica {replica} is FATAL (it gave up restarting)",
                       "last_error": facts.fatal[replica] or None})
    return alerts, Alerted(verdict=facts.verdict, fatal=frozenset(facts.fatal))


class AlertSender:
    def __init__(self, client: redis.Redis, retry_intervals: Iterable[int]):
        self.client = client
        self.queue = Queue(keys.ALERT_QUEUE, connection=client)
        self.intervals = list(retry_intervals)

    def read(self, consumer_ids: list[str]) -> dict[str, Alerted]:
        pipe = self.client.pipeline(transaction=False)
        for cid in consumer_ids:
            pipe.get(keys.alerted_key(cid))
        return {cid: Alerted.decode(raw) for cid, raw in zip(consumer_ids, pipe.execute(), strict=True)}

    def sample(self, facts: list[ConsumerFacts], now: float) -> list[dict]:
        """Enqueue this sample's alerts and remember them, in one transaction; returns the alerts."""
        before = self.read([f.consumer_id for f in facts])
        pipe = self.client.pipeline(transaction=True)
        sent = []
        for f in facts:
            alerts, after = decide(f, before[f.consumer_id], now)
            for alert in alerts:
                # the job carries the alert only; the URL (it may hold a token) is read by the rq worker
                self.queue.enqueue_call("supervisor.lag.webhook.deliver", args=(alert,), pipeline=pipe,
                                        retry=Retry(max=len(self.intervals), interval=self.intervals),
                                        timeout=JOB_TIMEOUT, result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
                                        description=f"kcm alert {alert['kind']} {alert['consumer_id']}")
            pipe.set(keys.alerted_key(f.consumer_id), after.encode(), px=int(MEMORY_TTL * 1000))
            sent.extend(alerts)
        pipe.execute()
        return sent

    def forget(self, consumer_ids: Iterable[str]) -> None:
        names = [keys.alerted_key(cid) for cid in consumer_ids]
        if names:
            self.client.delete(*names)
