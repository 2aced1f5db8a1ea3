"""Fixtures for the monitoring tests: the real lag monitor (``python -m supervisor.lag``) and supervisor as
subprocesses over the real Kafka, PostgreSQL and Redis; desired state written as the API would."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from schema import keys
from tests.integration.api.conftest import app, client  # noqa: F401  (the API fixtures)
from tests.integration.runtime.conftest import FAST, Runtime, runtime  # noqa: F401  (the runtime fixture)
from tests.support.kafka import wait_for

MONITOR = {"KCM_LAG_INTERVAL": "0.5", "KCM_LAG_WINDOW": "4", "KCM_LOG_FORMAT": "json"}


def produce_at(bootstrap: str, topic: str, partition: int, timestamps_ms: list[int]) -> None:
    """One message per timestamp (CreateTime), in order, to one partition."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i, ts in enumerate(timestamps_ms):
        producer.produce(topic, value=b"m%d" % i, partition=partition, timestamp=ts)
    assert producer.flush(30) == 0


def commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit offsets for a group that has no live member (what a stopped consumer left behind)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


class Monitor:
    def __init__(self, rt: Runtime, env: dict[str, str]):
        self.rt = rt
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log_path = rt.tmp_path / "lag.log"

    def start(self, **extra) -> subprocess.Popen:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "supervisor.lag"], env={**self.env, **extra},
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self.proc

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def lag(self, cid: str) -> dict | None:
        raw = self.rt.redis.get(keys.lag_key(cid))
        return json.loads(raw) if raw else None

    def health(self, cid: str) -> dict | None:
        raw = self.rt.redis.get(keys.health_key(cid))
        return json.loads(raw) if raw else None

    def wait_lag(self, cid: str, predicate, timeout: float = 40, message: str = "lag") -> dict:
        def check():
            lag = self.lag(cid)
            return lag if lag is not None and predicate(lag) else None
        return wait_for(check, timeout=timeout, interval=0.1,
                        message=f"{message} of {cid} (now {self.lag(cid)}; monitor log tail {self.log()[-800:]!r})")

    def wait_verdict(self, cid: str, verdict: str, timeout: float = 40) -> dict:
        def check():
            health = self.health(cid)
            return health if health is not None and health["verdict"] == verdict else None
        return wait_for(check, timeout=timeout, interval=0.1,
                        message=f"verdict {verdict} of {cid} (now {self.health(cid)}; log {self.log()[-800:]!r})")


@pytest.fixture
def monitor(runtime):  # noqa: F811
    m = Monitor(runtime, {**runtime.env, **MONITOR})
    yield m
    m.stop()


def now_ms() -> int:
    return int(time.time() * 1000)
