"""A setting librdkafka refuses is a configuration error: the replica is FATAL at once with the reason, no restart.

Through the real supervisor: the consumer's (or a kafka_forward's) librdkafka settings are refused when the client
is created (``_INVALID_ARG``); the worker exits 78 and the supervisor marks the replica FATAL without a retry.
A value librdkafka would echo is replaced by the property's name when it came from a secret reference.
"""
from __future__ import annotations

from schema.models import Consumer, DownstreamProcessor
from schema.states import DesiredState


def _fatal(runtime, cid: str) -> dict[str, str]:
    state = runtime.wait_state(cid, "FATAL", timeout=40)
    assert state["retries"] == "0", state  # straight to FATAL: no BACKOFF, no restart
    spawned = [line for line in runtime.supervisor_log().splitlines() if "WorkerSpawned" in line and cid in line]
    assert len(spawned) == 1, spawned  # one process ever started for the replica
    return state


def test_settings_librdkafka_refuses_are_fatal_at_once_with_librdkafkas_reason(runtime, topic_factory):
    # allowlisted keys, but an incomplete combination: librdkafka refuses it when the client is created
    cid, _out = runtime.create_consumer(topic_factory(partitions=1), security={
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER", "sasl.oauthbearer.method": "oidc"})
    runtime.start_supervisor()
    state = _fatal(runtime, cid)
    assert "ConsumerConfigError" in state["last_error"]
    assert "sasl.oauthbearer.token.endpoint.url` is mandatory" in state["last_error"]
    assert "returncode=78" in runtime.supervisor_log()


def test_a_setting_off_the_allowlist_in_a_stored_row_is_fatal_at_start(runtime, topic_factory):
    cid, _out = runtime.create_consumer(topic_factory(partitions=1), security={
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "NOPE"})
    runtime.start_supervisor()
    state = _fatal(runtime, cid)
    assert "ConsumerConfigError: security settings refused: sasl.mechanism" in state["last_error"]


def test_a_refused_value_from_a_secret_reference_is_named_by_its_reference_not_shown(runtime, topic_factory):
    secret = "s3cr3t-protocol-7d1e"
    cid, _out = runtime.create_consumer(topic_factory(partitions=1),
                                        security={"security.protocol": "${env:KCM_SECRET_RT_PROTOCOL}"})
    runtime.start_supervisor(KCM_SECRET_RT_PROTOCOL=secret)
    state = _fatal(runtime, cid)
    assert ("SecretReferenceInvalid: ${env:KCM_SECRET_RT_PROTOCOL} is not a valid value for security.protocol"
            in state["last_error"])
    assert secret not in str(state) + str(runtime.heartbeat(cid)) + runtime.supervisor_log()


def test_a_kafka_forward_producer_refused_at_open_is_fatal_at_once(runtime, topic_factory):
    topic, target = topic_factory(partitions=1), topic_factory(partitions=1)
    with runtime.sessions() as session, session.begin():
        consumer = Consumer(bootstrap_servers=[runtime.bootstrap], topic=topic, consumer_group=f"kcm-rt-{topic}",
                            replicas=1, desired_state=DesiredState.RUNNING, generation=1)
        consumer.downstream_processors.append(DownstreamProcessor(
            processor_type="kafka_forward", position=0, config={
                "topic": target, "security": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
                                              "sasl.oauthbearer.method": "oidc"}}))
        session.add(consumer)
    cid = str(consumer.id)
    runtime.command(cid, "create")
    runtime.start_supervisor()
    state = _fatal(runtime, cid)
    assert "ProcessorFatalError" in state["last_error"]
    assert "sasl.oauthbearer.token.endpoint.url` is mandatory" in state["last_error"]
