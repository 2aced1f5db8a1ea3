"""Webhook alerts without Prometheus, end to end: the lag monitor enqueues, the Procfile's rq worker (listening to
kcm-dead-letters and kcm-alerts) delivers to a receiver on 127.0.0.1. One alert per change, also across a
monitor restart; none lost while the receiver is down for a minute; the webhook URL never reaches Redis or a log."""
from __future__ import annotations

import json
import shlex
import signal
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis
from rq import Queue
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from schema import keys
from schema.models import DownstreamProcessor
from tests.integration.api.test_gunicorn import free_port
from tests.integration.monitoring.conftest import commit, now_ms, produce_at
from tests.support.kafka import wait_for

ROOT = Path(__file__).resolve().parents[3]
DOWN_SECONDS = 60
SECRET_PATH = "/hooks/kcm-9c1e77-never-stored"  # stands for a token in the URL's path (Slack, Teams, ...)


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records each alert; ``down()`` closes the port (connection refused)."""

    def __init__(self, port: int):
        self.port = port
        self.alerts: list[dict] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{SECRET_PATH}"

    def up(self) -> None:
        alerts = self.alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == SECRET_PATH and self.headers.get("Content-Type") == "application/json":
                    alerts.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def of(self, kind: str) -> list[dict]:
        return [a for a in self.alerts if a["kind"] == kind]


def _rq_worker(runtime, env: dict, log_path: Path) -> subprocess.Popen:
    """The Procfile's ``deadletters`` line, on the test's Redis."""
    line = next(line.split(": ", 1)[1] for line in (ROOT / "Procfile").read_text().splitlines()
                if line.startswith("deadletters: "))
    argv = shlex.split(line)
    argv[argv.index("--url") + 1] = runtime.env["KCM_REDIS_URL"]
    argv[0] = str(ROOT / ".venv" / "bin" / "rq")
    assert argv[-2:] == [keys.DEAD_LETTER_QUEUE, keys.ALERT_QUEUE]
    return subprocess.Popen(argv, cwd=ROOT, env={**runtime.env, **env}, stdout=open(log_path, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _samples_after(runtime, count: int) -> None:
    """Wait (polling) until the lag monitor has taken ``count`` more samples than it had now."""
    interval = float(runtime.env.get("KCM_LAG_INTERVAL", "0.5"))
    horizon = time.time() + count * interval

    def sampled():
        last = runtime.redis.hget(keys.LAG_MONITOR_KEY, "last_sample")
        return last is not None and float(last) > horizon
    wait_for(sampled, timeout=30 + count * interval * 4, message=f"{count} more lag samples")


def _queue_drained(client: redis.Redis) -> bool:
    queue = Queue(keys.ALERT_QUEUE, connection=client)
    return queue.count == 0 and not ScheduledJobRegistry(queue=queue).get_job_ids() \
        and not StartedJobRegistry(queue=queue).get_job_ids()


def _no_url_in_redis(client: redis.Redis) -> None:
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        values = (client.hvals(key) if kind == b"hash" else [client.get(key)] if kind == b"string"
                  else client.lrange(key, 0, -1) if kind == b"list" else [])
        assert not any(SECRET_PATH.encode() in (v or b"") for v in values), key


def test_a_fatal_consumer_alerts_err_and_fatal_once_and_its_recovery_once(runtime, monitor, topic_factory,
                                                                          tmp_path):
    receiver = Receiver(free_port())
    receiver.up()
    hook = {"KCM_ALERT_WEBHOOK_URL": receiver.url, "KCM_ALERT_RETRY_INTERVALS": "1,1,1"}
    worker = _rq_worker(runtime, hook, tmp_path / "rq.log")
    try:
        topic = topic_factory(partitions=1)
        cid = runtime.create_consumer(topic, processor_config={"fail_open": True})[0]  # fails at every start
        monitor.start(**hook)
        runtime.start_supervisor()
        runtime.wait_state(cid, "FATAL")
        wait_for(lambda: receiver.of("consumer_verdict") and receiver.of("replica_fatal"), timeout=40,
                 message=f"the ERR and FATAL alerts (got {receiver.alerts}; monitor {monitor.log()[-600:]!r})")
        firing, fatal = receiver.of("consumer_verdict")[0], receiver.of("replica_fatal")[0]
        assert (firing["status"], firing["verdict"], firing["consumer_id"], firing["topic"]) == (
            "firing", "ERR", cid, topic)
        assert "replica 0 is FATAL" in firing["reason"]
        assert (fatal["replica"], fatal["status"]) == (0, "firing") and "fail_open" in fatal["last_error"]

        # a restarted monitor remembers what it sent
        monitor.stop()
        monitor.start(**hook)
        _samples_after(runtime, 6)
        wait_for(lambda: _queue_drained(runtime.redis), timeout=20, message="the alert queue drained")
        assert len(receiver.alerts) == 2, receiver.alerts

        # the fix: a config that opens, and the restart command that clears FATAL
        with runtime.sessions() as session, session.begin():
            processor = session.query(DownstreamProcessor).filter_by(consumer_id=uuid.UUID(cid)).one()
            processor.config = {**processor.config, "fail_open": False}
        runtime.change(cid, command="restart")
        runtime.wait_state(cid, "RUNNING")
        wait_for(lambda: any(a["status"] == "resolved" for a in receiver.of("consumer_verdict")), timeout=40,
                 message=f"the recovery alert (got {receiver.alerts})")
        _samples_after(runtime, 6)
        wait_for(lambda: _queue_drained(runtime.redis), timeout=20, message="the alert queue drained")
        verdicts = receiver.of("consumer_verdict")
        assert [(a["status"], a["previous_verdict"], a["verdict"]) for a in verdicts] == [
            ("firing", firing["previous_verdict"], "ERR"), ("resolved", "ERR", "OK")]
        assert len(receiver.of("replica_fatal")) == 1 and len(receiver.alerts) == 3
        assert len({a["alert_id"] for a in receiver.alerts}) == 3
        _no_url_in_redis(runtime.redis)
        logs = monitor.log() + (tmp_path / "rq.log").read_text(errors="replace")
        assert "AlertDelivered" in logs and SECRET_PATH not in logs
    finally:
        _stop(worker)
        receiver.down()


def test_an_unreachable_receiver_loses_no_alert_while_it_is_down_for_a_minute(runtime, monitor, topic_factory,
                                                                             kafka_bootstrap, tmp_path):
    receiver = Receiver(free_port())  # not listening yet: connection refused
    hook = {"KCM_ALERT_WEBHOOK_URL": receiver.url, "KCM_ALERT_RETRY_INTERVALS": "1,2,4,8,16,32,64"}
    worker = _rq_worker(runtime, hook, tmp_path / "rq.log")
    try:
        topic = topic_factory(partitions=1)
        produce_at(kafka_bootstrap, topic, 0, [now_ms()] * 4)
        cid = runtime.create_consumer(topic, running=True)[0]  # desired running, no supervisor: STOP -> ERR
        group = f"kcm-rt-{topic}"
        commit(kafka_bootstrap, group, topic, {0: 1})
        went_down = time.monotonic()
        monitor.start(**hook)
        monitor.wait_verdict(cid, "ERR")
        # the consumer recovers while the receiver is still down: a second alert waits too
        commit(kafka_bootstrap, group, topic, {0: 4})
        monitor.wait_verdict(cid, "OK")
        queue = Queue(keys.ALERT_QUEUE, connection=runtime.redis)
        wait_for(lambda: len(ScheduledJobRegistry(queue=queue).get_job_ids()) == 2, timeout=30,
                 message="both alerts waiting for a retry")
        wait_for(lambda: time.monotonic() - went_down >= DOWN_SECONDS, timeout=DOWN_SECONDS + 5, interval=0.5,
                 message="a minute of downtime")
        assert receiver.alerts == []
        assert len(ScheduledJobRegistry(queue=queue).get_job_ids()) == 2  # still retrying, none given up

        receiver.up()
        wait_for(lambda: len(receiver.alerts) == 2, timeout=90, interval=0.2,
                 message=f"both alerts delivered after the outage (rq log {(tmp_path / 'rq.log').read_text()[-800:]})")
        assert sorted(a["status"] for a in receiver.alerts) == ["firing", "resolved"]
        assert all(a["consumer_id"] == cid for a in receiver.alerts)
        rq_log = (tmp_path / "rq.log").read_text(errors="replace")
        assert "WebhookFailed" in rq_log and "unreachable (ConnectionRefusedError)" in rq_log
        assert SECRET_PATH not in rq_log
        _no_url_in_redis(runtime.redis)
    finally:
        _stop(worker)
        receiver.down()
