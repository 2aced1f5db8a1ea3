"""The worker's Kafka configuration: secrets by reference, resolved at start, never echoed."""
from __future__ import annotations

import pytest

from schema.settings import Settings
from schema.spec import WorkerSpec
from workers.config import (
    ConsumerConfigError,
    consumer_config,
    is_cooperative,
    redacted_config,
    resolve_references,
)


def spec(**overrides) -> WorkerSpec:
    values = dict(consumer_id="c1", replica=2, generation=3, bootstrap_servers="k1:9092,k2:9092", topic="orders",
                  group_id="billing")
    return WorkerSpec(**{**values, **overrides})


SETTINGS = Settings.from_env({"KCM_BATCH_SIZE": "500"})


def test_consumer_config_stores_offsets_only_after_delivery():
    config = consumer_config(spec(), SETTINGS, {})
    assert config["bootstrap.servers"] == "k1:9092,k2:9092" and config["group.id"] == "billing"
    assert config["enable.auto.offset.store"] is False and config["enable.auto.commit"] is True
    assert config["auto.offset.reset"] == "earliest"
    assert config["client.id"] == "kcm-c1-2"
    assert config["fetch.queue.backoff.ms"] <= 10  # librdkafka >= 2.2 defaults to 1000 ms


def test_rebalances_are_cooperative_by_default_and_a_consumer_can_choose_otherwise():
    assert is_cooperative(consumer_config(spec(), SETTINGS, {}))  # a joining replica stops nobody
    eager = consumer_config(spec(security={"partition.assignment.strategy": "range,roundrobin"}), SETTINGS, {})
    assert eager["partition.assignment.strategy"] == "range,roundrobin" and not is_cooperative(eager)


def test_env_and_file_references_resolve(tmp_path):
    secret_file = tmp_path / "password"
    secret_file.write_text("from-file\n")
    config = consumer_config(spec(security={
        "security.protocol": "SASL_SSL", "sasl.username": "${env:KAFKA_USER}",
        "sasl.password": f"${{file:{secret_file}}}"}), SETTINGS, {"KAFKA_USER": "alice"})
    assert config["sasl.username"] == "alice" and config["sasl.password"] == "from-file"
    assert redacted_config(config)["sasl.password"] == "***"
    assert redacted_config(config)["sasl.username"] == "alice"


def test_missing_env_reference_is_a_config_error_naming_the_variable_not_a_value():
    with pytest.raises(ConsumerConfigError, match=r"\$\{env:KAFKA_PASSWORD\}"):
        resolve_references("${env:KAFKA_PASSWORD}", {"OTHER": "x"})


def test_missing_file_reference_is_a_config_error(tmp_path):
    with pytest.raises(ConsumerConfigError, match="No such file"):
        resolve_references(f"${{file:{tmp_path / 'absent'}}}", {})


def test_bad_auto_offset_reset_is_a_config_error():
    with pytest.raises(ConsumerConfigError, match="auto_offset_reset"):
        consumer_config(spec(auto_offset_reset="sideways"), SETTINGS, {})



def test_a_refused_value_is_named_by_its_property_and_no_resolved_secret_survives():
    from workers.config import refused_config_message, secret_values

    security = {"security.protocol": "${env:PROTO}", "sasl.mechanism": "PLAIN", "sasl.password": "${env:PW}"}
    config = consumer_config(spec(security=security), SETTINGS, {"PROTO": "hunter2-proto", "PW": "hunter2-pw"})
    secrets = secret_values(security, config)
    assert set(secrets) == {"hunter2-proto", "hunter2-pw"}  # only the values that came from references
    echoed = refused_config_message('Invalid value "hunter2-proto" for configuration property "security.protocol"',
                                    secrets)
    assert echoed == 'the value of configuration property "security.protocol" was refused'
    elsewhere = refused_config_message("Failed to create consumer: bad password hunter2-pw here", secrets)
    assert "hunter2" not in elsewhere and "***" in elsewhere
    plain = "Failed to create consumer: Unsupported SASL mechanism: NOPE"
    assert refused_config_message(plain, secrets) == plain  # nothing secret: librdkafka's words as they are


def test_max_poll_interval_comes_from_the_setting():
    config = consumer_config(spec(), Settings.from_env({"KCM_MAX_POLL_INTERVAL_MS": "6000"}), {})
    assert config["max.poll.interval.ms"] == 6000
    assert consumer_config(spec(), SETTINGS, {})["max.poll.interval.ms"] == 300_000  # librdkafka's default
