"""The web process as deployed (gunicorn with deploy/gunicorn.conf.py, two workers): HTTP counts are exact across
workers, gunicorn's access log is JSON, and a real Prometheus server scrapes /metrics with a bearer token and
answers a query for a known consumer's lag."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from tests.integration.api.conftest import ADMIN_TOKEN
from tests.integration.api.test_gunicorn import free_port, request
from tests.integration.monitoring.conftest import commit, now_ms, produce_at
from tests.support.kafka import wait_for

ROOT = Path(__file__).resolve().parents[3]
HEALTHZ_COUNT = re.compile(r'^kcm_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$', re.M)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _web(runtime, tmp_path: Path, port: int) -> subprocess.Popen:
    env = {**runtime.env, "KCM_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN, "KCM_LOG_FORMAT": "json",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "KCM_RATE_LIMIT_ENABLED": "false",
           "WEB_CONCURRENCY": "2"}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    return subprocess.Popen([str(gunicorn), "-c", "deploy/gunicorn.conf.py", "api:create_app()",
                             "--bind", f"127.0.0.1:{port}"], cwd=ROOT, env=env,
                            stdout=open(tmp_path / "web.log", "wb"), stderr=subprocess.STDOUT)


def test_gunicorn_workers_share_exact_http_counts_and_prometheus_scrapes_the_lag(runtime, monitor, topic_factory,
                                                                                 kafka_bootstrap, tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is not installed: apt-get install -y prometheus (.ci/run installs it)"
    topic = topic_factory(partitions=1)
    produce_at(kafka_bootstrap, topic, 0, [now_ms()] * 5)
    cid = runtime.create_consumer(topic, running=False)[0]
    commit(kafka_bootstrap, f"kcm-rt-{topic}", topic, {0: 2})
    monitor.start()
    monitor.wait_lag(cid, lambda lag: lag["total_messages"] == 3)

    port = free_port()
    web = _web(runtime, tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    prom = None
    try:
        wait_for(lambda: _answers(f"{base}/healthz"), timeout=30, message="gunicorn up")
        for _ in range(19):  # 20 with the probe above
            assert request(f"{base}/healthz", token=None)[0] == 200
        counts = set()
        for _ in range(8):  # each scrape lands on either worker: both must report the sum
            status, text = request(f"{base}/metrics")
            assert status == 200, text
            counts.add(float(HEALTHZ_COUNT.search(text).group(1)))
        assert counts == {20.0}

        prom_port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": "kcm", "metrics_path": "/metrics",
                                "authorization": {"type": "Bearer", "credentials": ADMIN_TOKEN},
                                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}))
        prom = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT)
        query = urllib.parse.quote(f'kcm_consumer_lag_messages{{consumer_id="{cid}"}}')

        def lag_from_prometheus():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/query?query={query}",
                                            timeout=5) as response:
                    result = json.loads(response.read())["data"]["result"]
            except OSError:
                return None
            return result or None

        result = wait_for(lag_from_prometheus, timeout=60, interval=0.5, message="Prometheus has the lag")
        assert result[0]["metric"]["topic"] == topic and result[0]["metric"]["partition"] == "0"
        assert result[0]["value"][1] == "3"
    finally:
        if prom is not None:
            _stop(prom)
        _stop(web)
    lines = [json.loads(line) for line in (tmp_path / "web.log").read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "gunicorn.access" and line.get("path") == "/healthz"]
    assert len(access) == 20 and {line["status"] for line in access} == {"200"}
    assert all(line["request_id"] for line in access) and all(line["process"] == "web" for line in access)
    assert ADMIN_TOKEN not in (tmp_path / "web.log").read_text()
    assert os.listdir(tmp_path / "metrics")  # the workers' metric files


def _answers(url: str) -> bool:
    try:
        return request(url, token=None)[0] == 200
    except OSError:
        return False
