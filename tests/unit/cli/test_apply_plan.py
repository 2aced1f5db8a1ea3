"""``api.cli.apply.plan``: the calls that make a consumer equal to a document (pure: no API)."""
from __future__ import annotations

from api.cli.apply import plan
from api.cli.documents import create_body, writable

CURRENT = {
    "id": "c1", "name": "orders", "broker_ip": None, "broker_port": None, "bootstrap_servers": ["k1:9092"],
    "topic": "orders", "consumer_group": "g", "client_id": None, "replicas": 1, "auto_offset_reset": "earliest",
    "security": None, "status": "ACTIVE", "desired_state": "running", "generation": 3,
    "created_at": "2026-12-01T00:00:00+00:00", "updated_at": "2026-12-01T00:00:00+00:00",
    "downstream_processors": [
        {"id": "p0", "consumer_id": "c1", "processor_type": "file_sink", "config": {"file_path": "a.log"},
         "on_error": "retry", "position": 0, "created_at": "x", "updated_at": "x"},
        {"id": "p1", "consumer_id": "c1", "processor_type": "database_sync", "config": {}, "on_error": "retry",
         "position": 1, "created_at": "x", "updated_at": "x"},
    ],
}


def steps(document: dict) -> list[tuple]:
    return [(s.method, s.route, s.body) for s in plan(CURRENT, writable(document))]


def test_the_consumer_as_read_plans_nothing():
    assert steps(CURRENT) == []


def test_only_differing_fields_are_patched_and_left_out_ones_are_kept():
    assert steps({"name": "orders", "replicas": 2, "client_id": None}) == [("PATCH", (), {"replicas": 2})]


def test_a_comma_separated_bootstrap_string_equals_the_stored_list():
    assert steps({"bootstrap_servers": "k1:9092"}) == []
    assert steps({"broker_ip": "k2", "broker_port": 9092, "bootstrap_servers": None}) == [
        ("PATCH", (), {"broker_ip": "k2", "broker_port": 9092, "bootstrap_servers": None})]


def test_processors_match_by_place_same_type_is_patched_another_type_replaced():
    assert steps({"downstream_processors": [
        {"processor_type": "file_sink", "config": {"file_path": "b.log"}},
        {"processor_type": "kafka_forward", "config": {"topic": "copy"}},
    ]}) == [
        ("DELETE", ("processors", "p1"), None),
        ("PATCH", ("processors", "p0"), {"config": {"file_path": "b.log"}}),
        ("POST", ("processors",), {"config": {"topic": "copy"}, "on_error": "retry", "position": 1,
                                   "processor_type": "kafka_forward"}),
    ]


def test_missing_processors_are_removed_and_defaults_count_as_given():
    assert steps({"downstream_processors": [{"processor_type": "file_sink", "config": {"file_path": "a.log"}}]}) == [
        ("DELETE", ("processors", "p1"), None)]
    assert steps({"downstream_processors": []}) == [("DELETE", ("processors", "p0"), None),
                                                    ("DELETE", ("processors", "p1"), None)]
    # on_error left out means the API's default, retry: the same as stored
    assert steps({"downstream_processors": [{"processor_type": "file_sink", "config": {"file_path": "a.log"}},
                                            {"processor_type": "database_sync", "on_error": "skip"}]}) == [
        ("PATCH", ("processors", "p1"), {"on_error": "skip"})]


def test_a_create_body_leaves_out_read_only_fields_and_nulls():
    body = create_body(CURRENT)
    assert "id" not in body and "status" not in body and "broker_ip" not in body and "client_id" not in body
    assert body["bootstrap_servers"] == ["k1:9092"]
    assert body["downstream_processors"][0] == {"processor_type": "file_sink", "config": {"file_path": "a.log"},
                                                "on_error": "retry", "position": 0}
