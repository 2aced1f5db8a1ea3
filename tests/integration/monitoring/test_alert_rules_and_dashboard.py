"""deploy/prometheus/ and deploy/grafana/ are true to the code: promtool checks and unit-tests the alerting rules
and checks the example configuration, and every metric the rules and the dashboard name is one a real /metrics
scrape exports."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "kcm.json"
METRIC = re.compile(r"\b(kcm_[a-z0-9_]+)\b")
TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"), "gauge": (), "info": ("_info",), "untyped": ()}


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is not installed: apt-get install -y prometheus (.ci/run installs it)"
    return found


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def exported_names(exposition: str) -> set[str]:
    """Every sample name a scrape can carry: each family's name with its type's suffixes."""
    names = set()
    for family, kind in TYPE_LINE.findall(exposition):
        names.add(family)
        names.update(family + suffix for suffix in SUFFIXES.get(kind, ()))
    return names


def _scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_promtool_checks_the_alerting_rules_and_their_unit_tests_pass():
    checked = _run("check", "rules", "alerts.yml", cwd=PROMETHEUS_DIR)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run("test", "rules", "alerts_test.yml", cwd=PROMETHEUS_DIR)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_every_alert_rule_has_a_unit_test_that_expects_it_to_fire():
    rules = {r["alert"] for g in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
             for r in g["rules"]}
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")}
    quiet = {case["alertname"] for t in tests for case in t["alert_rule_test"] if not case.get("exp_alerts")}
    assert {"KcmConsumerErr", "KcmConsumerLagHigh", "KcmReplicaFatal", "KcmSupervisorDown", "KcmNoSupervisor",
            "KcmLagMonitorDown", "KcmDeadLettersGrowing"} <= rules
    assert fired == rules and quiet == rules  # each rule: when it fires and when it must not


def test_promtool_checks_the_example_prometheus_configuration(tmp_path):
    # the example reads the token from /run/secrets; promtool insists the file exists, so point it at one here
    token = tmp_path / "kcm-viewer-token"
    token.write_text("kcm_viewer_example\n")
    config = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    assert "credentials_file: /run/secrets/kcm-viewer-token" in config and "credentials:" not in config
    (tmp_path / "prometheus.yml").write_text(config.replace("/run/secrets/kcm-viewer-token", str(token)))
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    checked = _run("check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout + checked.stderr


def test_the_alerting_rules_name_only_metrics_that_metrics_exports(client):
    exported = exported_names(_scrape(client))
    rules = [r["expr"] for g in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
             for r in g["rules"]]
    named = {m for expr in rules for m in METRIC.findall(expr)}
    assert named and named - exported == set()


def _dashboard_exprs(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        query = node.get("query")
        if isinstance(query, dict) and isinstance(query.get("query"), str):
            found.append(query["query"])
        return found + [e for value in node.values() for e in _dashboard_exprs(value)]
    if isinstance(node, list):
        return [e for value in node for e in _dashboard_exprs(value)]
    return []


def test_the_dashboard_queries_only_metrics_that_metrics_exports(client):
    exported = exported_names(_scrape(client))
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _dashboard_exprs(dashboard)
    named = {m for expr in exprs for m in METRIC.findall(expr)}
    assert named - exported == set(), f"the dashboard names metrics /metrics does not export: {named - exported}"
    # what the dashboard is for: each of these has a panel
    for metric in ("kcm_consumer_messages_per_second", "kcm_consumer_lag_messages", "kcm_consumer_lag_seconds",
                   "kcm_consumer_health", "kcm_replica_state", "kcm_replica_restarts_total", "kcm_dead_letters"):
        assert metric in named, metric
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert "kcm_consumer_info" in variables["consumer"]["definition"]
    consumer_panels = [e for e in exprs if "kcm_consumer_" in e and "label_values" not in e]
    assert consumer_panels and all('consumer_id=~"$consumer"' in e for e in consumer_panels)
