"""Which changes raise a webhook alert (supervisor/lag/alerts.py ``decide``): pure."""
from __future__ import annotations

from supervisor.lag.alerts import Alerted, ConsumerFacts, decide


def facts(verdict: str, fatal: dict[int, str] | None = None) -> ConsumerFacts:
    return ConsumerFacts("c1", "orders", "g1", verdict, f"reason for {verdict}", fatal or {})


def run(verdicts: list[tuple[str, dict]]) -> list[dict]:
    memory, sent = Alerted(), []
    for t, (verdict, fatal) in enumerate(verdicts):
        alerts, memory = decide(facts(verdict, fatal), memory, float(t))
        sent += alerts
    return sent


def test_entering_and_leaving_err_alert_once_each_and_other_changes_not_at_all():
    sent = run([("UNKNOWN", {}), ("OK", {}), ("WARN", {}), ("ERR", {}), ("ERR", {}), ("ERR", {}), ("WARN", {}),
                ("OK", {}), ("STOPPED", {})])
    assert [(a["kind"], a["status"], a["previous_verdict"], a["verdict"]) for a in sent] == [
        ("consumer_verdict", "firing", "WARN", "ERR"), ("consumer_verdict", "resolved", "ERR", "WARN")]
    assert sent[0]["reason"] == "reason for ERR" and sent[0]["topic"] == "orders" and sent[0]["at"].endswith("+00:00")
    assert len({a["alert_id"] for a in sent}) == 2


def test_a_replica_entering_fatal_alerts_once_and_again_only_after_it_left_fatal():
    sent = run([("ERR", {}), ("ERR", {0: "KafkaUnreachable"}), ("ERR", {0: "KafkaUnreachable"}), ("ERR", {}),
                ("ERR", {0: "again"})])
    fatal = [a for a in sent if a["kind"] == "replica_fatal"]
    assert [(a["replica"], a["last_error"]) for a in fatal] == [(0, "KafkaUnreachable"), (0, "again")]
    assert [a["status"] for a in sent if a["kind"] == "consumer_verdict"] == ["firing"]


def test_what_was_sent_is_remembered_so_a_restarted_monitor_does_not_send_it_again():
    alerts, memory = decide(facts("ERR", {1: ""}), Alerted(), 0.0)
    assert len(alerts) == 2
    restored = Alerted.decode(memory.encode())
    assert restored == memory
    assert decide(facts("ERR", {1: ""}), restored, 1.0)[0] == []
    assert Alerted.decode(b"garbage") == Alerted()
