"""schema.names: the topic, broker-address and protected-table rules the API and the processors share."""
from __future__ import annotations

import pytest
from marshmallow import ValidationError

from api.schemas.consumers import ConsumerIn
from processors.kafka_forward import KafkaForwardProcessor
from schema import names
from schema.models import Base


@pytest.mark.parametrize("value", ["orders", "A.b-c_d", "...", "x" * 249])
def test_topics_accepted(value):
    assert names.check_topic(value) == value


@pytest.mark.parametrize("value", ["orders\n", "\norders", ".", "..", "", "a b", "a/b", "x" * 250, "ü", None, 5])
def test_topics_rejected_including_a_trailing_newline(value):
    assert not names.is_topic(value)
    with pytest.raises(names.InvalidName, match="Invalid Kafka topic name"):
        names.check_topic(value)


@pytest.mark.parametrize("value,expected", [
    ("k1:9092", ["k1:9092"]),
    ("k1:9092,k2:9093", ["k1:9092", "k2:9093"]),
    (" k1:9092 , [::1]:9094 ", ["k1:9092", "[::1]:9094"]),
    (["k1:9092", "10.0.0.2:9093"], ["k1:9092", "10.0.0.2:9093"]),
])
def test_bootstrap_servers_in_both_forms_load_as_the_list(value, expected):
    assert names.bootstrap_servers(value) == expected


def test_bootstrap_servers_errors_name_the_bad_entries_and_never_repeat_them():
    with pytest.raises(names.InvalidEntries) as info:
        names.bootstrap_servers("k1:9092,,secret-host:0")
    assert info.value.entries == {1: names.HOST_PORT_MESSAGE, 2: names.HOST_PORT_MESSAGE}
    assert info.value.valid == ["k1:9092"] and "secret-host" not in str(info.value)
    for whole in ([], 42, {"k": 1}, ["k:1"] * 101):
        with pytest.raises(names.InvalidName, match="Expected 1-100"):
            names.bootstrap_servers(whole)


@pytest.mark.parametrize("table", [
    "consumers", "downstream_processors", "alembic_version", "kcm_offsets", "kcm_changes", "kcm_stage",
    "kcm_anything_later", "public.consumers", "other.kcm_offsets", "CONSUMERS", '"consumers"',
    '"public"."Consumers"', " consumers ", "Public.Downstream_Processors",
])
def test_kcms_own_tables_are_protected_in_every_spelling(table):
    assert names.protected_table(table)


def test_every_table_of_the_models_is_protected_without_listing_it():
    assert Base.metadata.tables  # the rule reads them: a table a later issue adds is protected too
    for table in Base.metadata.tables.values():
        assert names.protected_table(table.name) and names.protected_table(f"public.{table.name}")


@pytest.mark.parametrize("table", ["kcm_messages", "public.kcm_messages", "events", "consumers_archive", "my_kcm"])
def test_the_default_sink_table_and_other_tables_are_not_protected(table):
    assert not names.protected_table(table)


def _consumer(**fields) -> dict:
    return ConsumerIn().load({"topic": "t", "consumer_group": "g", **fields})


def test_consumer_bootstrap_servers_accepts_the_string_form_and_stores_the_list():
    assert _consumer(bootstrap_servers="k1:9092,k2:9092")["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert _consumer(bootstrap_servers=["k1:9092"])["bootstrap_servers"] == ["k1:9092"]


@pytest.mark.parametrize("value,expected", [
    ("k1:9092,nope", {1: [names.HOST_PORT_MESSAGE]}),
    (["k1:9092", 7], {1: [names.HOST_PORT_MESSAGE]}),
    ("", {0: [names.HOST_PORT_MESSAGE]}),
    ([], [names.BOOTSTRAP_MESSAGE]),
    (7, [names.BOOTSTRAP_MESSAGE]),
])
def test_consumer_bootstrap_garbage_is_refused_with_field_messages(value, expected):
    with pytest.raises(ValidationError) as info:
        _consumer(bootstrap_servers=value)
    assert info.value.messages["bootstrap_servers"] == expected


def test_consumer_topic_with_a_trailing_newline_is_refused():
    with pytest.raises(ValidationError) as info:
        _consumer(bootstrap_servers="k:1", topic="orders\n")
    assert info.value.messages == {"topic": [names.TOPIC_MESSAGE]}


def test_forwarder_topic_uses_the_same_rule():
    with pytest.raises(ValidationError) as info:
        KafkaForwardProcessor.validate_config({"topic": "orders\n"})
    assert info.value.messages == {"topic": [names.TOPIC_MESSAGE]}
    assert KafkaForwardProcessor.validate_config({"topic": "orders"})["topic"] == "orders"


@pytest.mark.parametrize("value,expected", [
    (["k1:9092", "k2:9092"], ["k1:9092", "k2:9092"]),
    ("k1:9092,k2:9092", ["k1:9092", "k2:9092"]),
    ("${env:TARGET_KAFKA}", "${env:TARGET_KAFKA}"),
    (None, None),
])
def test_forwarder_bootstrap_servers_accepts_the_consumers_forms_and_a_reference(value, expected):
    assert KafkaForwardProcessor.validate_config({"topic": "t", "bootstrap_servers": value})[
        "bootstrap_servers"] == expected
    assert KafkaForwardProcessor.canonical_config({"bootstrap_servers": value}) == {"bootstrap_servers": expected}


@pytest.mark.parametrize("value,expected", [
    ("k1:9092,nope", {1: [names.HOST_PORT_MESSAGE]}),
    (["k1:9092", "host:99999"], {1: [names.HOST_PORT_MESSAGE]}),
    ([], [f"{names.BOOTSTRAP_MESSAGE} Or a ${{env:NAME}} / ${{file:/path}} reference."]),
    (7, [f"{names.BOOTSTRAP_MESSAGE} Or a ${{env:NAME}} / ${{file:/path}} reference."]),
])
def test_forwarder_bootstrap_garbage_is_refused_with_field_messages(value, expected):
    with pytest.raises(ValidationError) as info:
        KafkaForwardProcessor.validate_config({"topic": "t", "bootstrap_servers": value})
    assert info.value.messages == {"bootstrap_servers": expected}
