"""What ``POST /consumers/validate/`` reports: ``Check`` results, and the one Kafka probe the consumer's own
cluster and ``kafka_forward``'s target share (metadata through an AdminClient, within a timeout).

A ``detail`` is for a person and never holds a secret: third-party text goes through the caller's ``Redactor``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def probe_topic(conf: dict, topic: str, *, what: str, redact: Callable[[str], str] = str,
                timeout: float = PROBE_TIMEOUT_S) -> list[Check]:
    """``{what} reachable`` and ``{what} topic``: the brokers answer within ``timeout`` and ``topic`` exists.
    Lists every topic rather than asking for one, so a broker that auto-creates topics creates nothing."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    servers = conf.get("bootstrap.servers", "")
    errors: list[str] = []
    client_conf = {**conf, "socket.connection.setup.timeout.ms": int(timeout * 1000),
                   "error_cb": lambda err: errors.append(err.str()), "log_level": 0}
    try:
        admin = AdminClient(client_conf)
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        reason = errors[-1] if errors else exc.args[0].str()
        return [Check(f"{what} reachable", False,
                      redact(f"Could not reach the brokers at {servers} within {timeout:g} s: {reason}")),
                Check(f"{what} topic", False, f"Not checked: the brokers at {servers} were not reached.")]
    reached = Check(f"{what} reachable", True,
                    f"Reached {servers}: {len(metadata.brokers)} broker(s) in the cluster.")
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return [reached, Check(f"{what} topic", False, f"Topic {topic!r} does not exist on {servers}; create it "
                                                        "first (kcm topic create, or your usual tooling).")]
    return [reached, Check(f"{what} topic", True, f"Topic {topic!r} exists with {len(found.partitions)} "
                                                  "partition(s).")]
