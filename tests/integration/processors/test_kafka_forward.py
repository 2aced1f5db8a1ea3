"""kafka_forward against the real Kafka: a second topic, an unreachable cluster, then recovery."""
from __future__ import annotations

import threading

import pytest
from marshmallow import ValidationError

from processors.base import FatalError, Record
from processors.kafka_forward import KafkaForwardProcessor
from processors.pipeline import Pipeline
from schema.spec import ProcessorSpec
from tests.integration.processors.conftest import drive
from tests.support.kafka import consume_all, produce


def _open(context, **config):
    spec = ProcessorSpec(id="fwd-1", processor_type="kafka_forward", config=config)
    pipeline = Pipeline.build([spec], consumer_id="c-fwd", context=context)
    pipeline.open()
    return pipeline


def test_100k_messages_are_forwarded_with_key_headers_and_timestamp(kafka_bootstrap, topic_factory, context):
    source, target = topic_factory(partitions=3), topic_factory(partitions=2)
    produce(kafka_bootstrap, source, 100_000, value_fn=lambda i: b"m-%d" % i)
    pipeline = _open(context, bootstrap_servers=kafka_bootstrap, topic=target)
    try:
        _group, delivered = drive(kafka_bootstrap, source, pipeline, expected=100_000)
    finally:
        pipeline.close()
    assert delivered == 100_000
    forwarded = consume_all(kafka_bootstrap, target, "g-fwd-check", 100_000, timeout=120)
    assert len(forwarded) == 100_000
    assert sorted(m.value() for m in forwarded) == sorted(b"m-%d" % i for i in range(100_000))
    assert all(m.key() == b"k" + m.value()[2:] for m in forwarded)
    assert all(m.timestamp()[1] > 0 for m in forwarded)


def test_headers_and_timestamp_are_preserved_exactly(kafka_bootstrap, topic_factory, context):
    target = topic_factory(partitions=1)
    pipeline = _open(context, topic=target)  # the consumer's own cluster, renamed topic
    pipeline.deliver([Record("src", 0, i, b"v%d" % i, key_=b"key", headers_=(("h1", b"a"), ("h2", None)),
                             timestamp_=(1, 1_600_000_000_000 + i)) for i in range(5)])
    pipeline.close()
    forwarded = consume_all(context.settings.kafka_bootstrap, target, "g-fwd-hdr", 5)
    assert [m.value() for m in forwarded] == [b"v%d" % i for i in range(5)]
    assert [m.timestamp()[1] for m in forwarded] == [1_600_000_000_000 + i for i in range(5)]
    assert all(m.headers() == [("h1", b"a"), ("h2", None)] and m.key() == b"key" for m in forwarded)


def test_unreachable_cluster_is_retried_then_recovers_with_nothing_lost(kafka_bootstrap, topic_factory, context,
                                                                       monkeypatch):
    target = topic_factory(partitions=1)
    monkeypatch.setenv("KCM_SECRET_TEST_FWD_BOOTSTRAP", "127.0.0.1:1")
    pipeline = _open(context, bootstrap_servers="${env:KCM_SECRET_TEST_FWD_BOOTSTRAP}", topic=target,
                     delivery_timeout_ms=3_000, max_retries=20, retry_timeout=90, retry_backoff=0.1,
                     retry_backoff_max=0.3)
    timer = threading.Timer(2.0, lambda: monkeypatch.setenv("KCM_SECRET_TEST_FWD_BOOTSTRAP", kafka_bootstrap))
    timer.start()
    pipeline.deliver([Record("src", 0, i, b"v%d" % i) for i in range(1_000)])
    timer.join()
    pipeline.close()
    assert pipeline.stats["fwd-1"]["retries"] >= 1
    forwarded = consume_all(kafka_bootstrap, target, "g-fwd-down", 1_000)
    # a partly delivered attempt is produced again on retry: duplicates allowed, losses not
    assert {m.value() for m in forwarded} == {b"v%d" % i for i in range(1_000)}


def test_unreachable_cluster_with_retry_policy_fails_the_batch(context, topic_factory):
    pipeline = _open(context, bootstrap_servers="127.0.0.1:1", topic="anywhere", delivery_timeout_ms=200,
                     max_retries=1, retry_backoff=0.01)
    with pytest.raises(Exception, match="deliveries failed"):
        pipeline.deliver([Record("src", 0, 0, b"v")])
    pipeline.close()


def test_forward_to_the_own_cluster_without_a_new_topic_is_fatal(context):
    pipeline = Pipeline.build([ProcessorSpec(id="f", processor_type="kafka_forward")], consumer_id="c",
                              context=context)
    with pytest.raises(FatalError, match="loop"):
        pipeline.open()


def test_plaintext_secrets_and_forced_settings_are_rejected():
    with pytest.raises(ValidationError) as info:
        KafkaForwardProcessor.validate_config({"topic": "t", "security": {"sasl.password": "hunter2"}})
    assert "hunter2" not in str(info.value.messages)
    with pytest.raises(ValidationError):
        KafkaForwardProcessor.validate_config({"topic": "t", "security": {"acks": "1"}})
    config = KafkaForwardProcessor.validate_config({"topic": "t", "security": {"sasl.password": "${env:KCM_SECRET_PW}"}})
    assert config["security"] == {"sasl.password": "${env:KCM_SECRET_PW}"}


def test_the_consumers_own_cluster_is_reached_with_the_consumers_security_when_the_forwarder_has_none(
        kafka_bootstrap, topic_factory, context, monkeypatch):
    import dataclasses

    target = topic_factory(partitions=1)
    secured = dataclasses.replace(context, bootstrap_servers=kafka_bootstrap,
                                  security={"security.protocol": "${env:KCM_SECRET_TEST_FWD_PROTOCOL}"})
    monkeypatch.delenv("KCM_SECRET_TEST_FWD_PROTOCOL", raising=False)
    with pytest.raises(FatalError, match="KCM_SECRET_TEST_FWD_PROTOCOL"):  # the consumer's reference is what it resolves
        _open(secured, topic=target)
    monkeypatch.setenv("KCM_SECRET_TEST_FWD_PROTOCOL", "PLAINTEXT")
    pipeline = _open(secured, topic=target)
    pipeline.deliver([Record("src", 0, i, b"s%d" % i) for i in range(3)])
    pipeline.close()
    assert [m.value() for m in consume_all(kafka_bootstrap, target, "g-fwd-sec", 3)] == [b"s0", b"s1", b"s2"]

    monkeypatch.delenv("KCM_SECRET_TEST_FWD_PROTOCOL")  # another cluster gets only the forwarder's own settings
    for servers in ([kafka_bootstrap], kafka_bootstrap):
        _open(secured, topic=target, bootstrap_servers=servers).close()
