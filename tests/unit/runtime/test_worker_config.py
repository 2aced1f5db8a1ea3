"""The worker's Kafka configuration: secrets by reference, resolved at start, never echoed; the allowlist and
the broker address policy checked again at start."""
from __future__ import annotations

import pytest

from schema.settings import Settings, SettingsError
from schema.spec import WorkerSpec
from workers.config import (
    ConsumerConfigError,
    consumer_config,
    is_cooperative,
    redacted_config,
)


def spec(**overrides) -> WorkerSpec:
    values = dict(consumer_id="c1", replica=2, generation=3, bootstrap_servers="k1:9092,k2:9092", topic="orders",
                  group_id="billing")
    return WorkerSpec(**{**values, **overrides})


SETTINGS = Settings.from_env({"KCM_BATCH_SIZE": "500"})


def settings_with(tmp_path, **values) -> Settings:
    env = {"KCM_BATCH_SIZE": "500", "KCM_SECRETS_DIR": str(tmp_path)}
    env.update({f"KCM_{k.upper()}": v for k, v in values.items()})
    return Settings.from_env(env)


def test_consumer_config_stores_offsets_only_after_delivery():
    config = consumer_config(spec(), SETTINGS, {})
    assert config["bootstrap.servers"] == "k1:9092,k2:9092" and config["group.id"] == "billing"
    assert config["enable.auto.offset.store"] is False and config["enable.auto.commit"] is True
    assert config["auto.offset.reset"] == "earliest"
    assert config["client.id"] == "kcm-c1-2"
    assert config["fetch.queue.backoff.ms"] <= 10  # librdkafka >= 2.2 defaults to 1000 ms


def test_rebalances_are_cooperative_and_security_cannot_change_the_strategy():
    assert is_cooperative(consumer_config(spec(), SETTINGS, {}))  # a joining replica stops nobody
    assert not is_cooperative({"partition.assignment.strategy": "range,roundrobin"})
    with pytest.raises(ConsumerConfigError, match="partition.assignment.strategy"):
        consumer_config(spec(security={"partition.assignment.strategy": "range,roundrobin"}), SETTINGS, {})


def test_env_and_file_references_resolve(tmp_path):
    secret_file = tmp_path / "password"
    secret_file.write_text("from-file\n")
    config = consumer_config(spec(security={
        "security.protocol": "SASL_SSL", "sasl.username": "${env:KCM_SECRET_KAFKA_USER}",
        "sasl.password": f"${{file:{secret_file}}}"}), settings_with(tmp_path), {"KCM_SECRET_KAFKA_USER": "alice"})
    assert config["sasl.username"] == "alice" and config["sasl.password"] == "from-file"
    assert redacted_config(config)["sasl.password"] == "***"
    assert redacted_config(config)["sasl.username"] == "alice"


def test_missing_env_reference_is_a_config_error_naming_the_variable_not_a_value():
    with pytest.raises(ConsumerConfigError, match=r"\$\{env:KCM_SECRET_KAFKA_PASSWORD\}"):
        consumer_config(spec(security={"sasl.password": "${env:KCM_SECRET_KAFKA_PASSWORD}"}), SETTINGS, {"X": "x"})


def test_missing_file_reference_is_a_config_error(tmp_path):
    with pytest.raises(ConsumerConfigError, match="No such file"):
        consumer_config(spec(security={"sasl.password": f"${{file:{tmp_path / 'absent'}}}"}),
                        settings_with(tmp_path), {})


def test_a_row_written_before_the_allowlist_is_refused_at_start():
    with pytest.raises(ConsumerConfigError, match="sasl.kerberos.kinit.cmd") as refused:
        consumer_config(spec(security={"sasl.kerberos.kinit.cmd": "touch /tmp/x"}), SETTINGS, {})
    assert "touch" not in str(refused.value)
    with pytest.raises(ConsumerConfigError, match="KCM_SECRET_ENV_PREFIX"):
        consumer_config(spec(security={"sasl.password": "${env:HOME}"}), SETTINGS, {"HOME": "/root"})


def test_brokers_outside_the_policy_are_refused_at_start(tmp_path):
    with pytest.raises(ConsumerConfigError, match="BrokerNotAllowed: bootstrap_servers entry 0"):
        consumer_config(spec(bootstrap_servers="169.254.169.254:9092"), SETTINGS, {})
    allowed = settings_with(tmp_path, allowed_brokers="k1,k2")
    assert consumer_config(spec(), allowed, {})["bootstrap.servers"] == "k1:9092,k2:9092"
    with pytest.raises(ConsumerConfigError, match="entry 1 \\(evil\\)"):
        consumer_config(spec(bootstrap_servers="k1:9092,evil:9092"), allowed, {})


def test_bad_auto_offset_reset_is_a_config_error():
    with pytest.raises(ConsumerConfigError, match="auto_offset_reset"):
        consumer_config(spec(auto_offset_reset="sideways"), SETTINGS, {})


def test_max_poll_interval_comes_from_the_setting():
    config = consumer_config(spec(), Settings.from_env({"KCM_MAX_POLL_INTERVAL_MS": "10000"}), {})
    assert config["max.poll.interval.ms"] == 10000
    assert consumer_config(spec(), SETTINGS, {})["max.poll.interval.ms"] == 300_000  # librdkafka's default


def test_session_timeout_comes_from_the_setting_and_has_a_floor():
    assert consumer_config(spec(), SETTINGS, {})["session.timeout.ms"] == 10_000
    fast = Settings.from_env({"KCM_SESSION_TIMEOUT_MS": "6000", "KCM_MAX_POLL_INTERVAL_MS": "6000"})
    config = consumer_config(spec(), fast, {})
    assert (config["session.timeout.ms"], config["heartbeat.interval.ms"]) == (6000, 1000)
    with pytest.raises(SettingsError, match="KCM_SESSION_TIMEOUT_MS='2999' must be at least 3000"):
        Settings.from_env({"KCM_SESSION_TIMEOUT_MS": "2999"})
    # librdkafka refuses max.poll.interval.ms < session.timeout.ms: said at start, not at the first consumer
    with pytest.raises(SettingsError, match="KCM_MAX_POLL_INTERVAL_MS=6000 must be at least KCM_SESSION_TIMEOUT_MS"):
        Settings.from_env({"KCM_MAX_POLL_INTERVAL_MS": "6000"})
