"""GET /consumers/{id}/offsets/ and POST .../offsets/reset/ against the real Kafka, no worker running: what the
API shows equals what an AdminClient reads independently; each strategy lands where Kafka's own
offsets_for_times or plain arithmetic says; every bad input is a 422 naming its field; Kafka's refusal to change
the offsets of a group with members is a 409; DELETE forgets the commit; each change is audited."""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from api.context import EXTENSION
from tests.integration.api.conftest import make_app
from tests.support.kafka import committed_offsets, consume_all, produce, wait_for

HOUR_MS = 3600 * 1000


@pytest.fixture
def world(pg_clean, pg_url, redis_client, redis_test_url, kafka_bootstrap, topic_factory):
    app = make_app(pg_url, redis_test_url)
    client = app.test_client()

    def create(topic: str, group: str, **fields) -> str:
        response = client.post("/consumers/", json={"bootstrap_servers": [kafka_bootstrap], "topic": topic,
                                                    "consumer_group": group, **fields})
        assert response.status_code == 201, response.json
        return response.json["id"]

    yield client, create
    app.extensions[EXTENSION].close()


def produce_at(bootstrap: str, topic: str, partition: int, timestamps_ms: list[int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, ts in enumerate(timestamps_ms):
        producer.produce(topic, value=b"m%d" % i, partition=partition, timestamp=ts)
    assert producer.flush(30) == 0


def kafka_offsets_for_times(bootstrap: str, topic: str, partitions: list[int], ts_ms: int) -> dict[int, int]:
    """Kafka's own answer, through a plain consumer (not kcm's AdminClient path)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kcm-tests-times"})
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, p, ts_ms) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def reset(client, cid: str, **body):
    return client.post(f"/consumers/{cid}/offsets/reset/", json=body)


def moves(response) -> dict[int, tuple[int | None, int | None]]:
    assert response.status_code == 200, response.json
    return {item["partition"]: (item["from"], item["to"]) for item in response.json["partitions"]}


def test_the_view_is_what_kafka_says_and_a_dry_run_changes_nothing(world, kafka_bootstrap, topic_factory):
    client, create = world
    topic = topic_factory(partitions=2)
    group = f"g-{topic}"
    produce(kafka_bootstrap, topic, 100)
    consume_all(kafka_bootstrap, topic, group, 100)
    produce(kafka_bootstrap, topic, 20)
    cid = create(topic, group)

    view = client.get(f"/consumers/{cid}/offsets/")
    assert view.status_code == 200, view.json
    committed = committed_offsets(kafka_bootstrap, group, topic)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "kcm-tests-marks"})
    marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in (0, 1)}
    consumer.close()
    assert [(p["partition"], p["committed"], p["low_watermark"], p["high_watermark"], p["lag"])
            for p in view.json["partitions"]] == [
        (p, committed[p], marks[p][0], marks[p][1], marks[p][1] - committed[p]) for p in (0, 1)]
    assert view.json["total_lag"] == 20 and view.json["exactly_once_processors"] == []

    planned = moves(reset(client, cid, to="earliest"))  # dry_run is the default
    assert sum(f for f, _ in planned.values()) == 100 and sum(t for _, t in planned.values()) == 0
    assert committed_offsets(kafka_bootstrap, group, topic) == committed
    assert moves(reset(client, cid, to="latest", partitions=[1])) == {1: (committed[1], marks[1][1])}


def test_timestamp_duration_shift_and_offset_land_where_kafka_and_arithmetic_say(world, kafka_bootstrap,
                                                                                  topic_factory):
    client, create = world
    topic = topic_factory(partitions=2)
    group = f"g-{topic}"
    now = int(time.time() * 1000)
    stamps = [now - (10 - i) * HOUR_MS for i in range(10)]  # one message an hour, the last one an hour ago
    for partition in (0, 1):
        produce_at(kafka_bootstrap, topic, partition, stamps)
    consume_all(kafka_bootstrap, topic, group, 20)  # committed: 10 and 10
    cid = create(topic, group)

    at = stamps[4] - 1000  # just before the fifth message
    expected = kafka_offsets_for_times(kafka_bootstrap, topic, [0, 1], at)
    assert expected == {0: 4, 1: 4}  # and the arithmetic agrees
    assert moves(reset(client, cid, to="timestamp", timestamp=at)) == {0: (10, 4), 1: (10, 4)}
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at / 1000)) + f".{at % 1000:03d}Z"
    assert moves(reset(client, cid, to="timestamp", timestamp=iso)) == {0: (10, 4), 1: (10, 4)}
    # PT3H30M ago: the messages stamped 3 h, 2 h and 1 h ago are at or after it
    assert moves(reset(client, cid, to="timestamp", duration="PT3H30M", partitions=[0])) == {0: (10, 7)}
    # later than every message: the end of the partition, as kafka-consumer-groups.sh does
    assert moves(reset(client, cid, to="timestamp", timestamp=now + HOUR_MS)) == {0: (10, 10), 1: (10, 10)}
    assert moves(reset(client, cid, to="shift", shift=-3)) == {0: (10, 7), 1: (10, 7)}
    assert moves(reset(client, cid, to="shift", shift=-300)) == {0: (10, 0), 1: (10, 0)}  # clamped to low
    assert moves(reset(client, cid, to="offset", offset=6, partitions=[1])) == {1: (10, 6)}
    assert moves(reset(client, cid, to="offset", offset=10**12)) == {0: (10, 10), 1: (10, 10)}  # clamped to high

    done = reset(client, cid, to="shift", shift=-4, dry_run=False)
    assert moves(done) == {0: (10, 6), 1: (10, 6)} and done.json["dry_run"] is False
    assert committed_offsets(kafka_bootstrap, group, topic) == {0: 6, 1: 6}
    assert moves(reset(client, cid, to="shift", shift=2, dry_run=False)) == {0: (6, 8), 1: (6, 8)}
    assert committed_offsets(kafka_bootstrap, group, topic) == {0: 8, 1: 8}
    events = client.get("/audit/", query_string={"action": "consumer.offsets_reset"}).json
    last = events[0]
    assert last["before"] == {"offsets": {"0": 6, "1": 6}}
    assert last["after"]["offsets"] == {"0": 8, "1": 8} and last["after"]["dry_run"] is False
    assert last["after"]["to"] == "shift" and last["after"]["shift"] == 2


BAD_BODIES = [
    ({"to": "yesterday"}, "to", "Must be one of: earliest, latest, timestamp, offset, shift"),
    ({}, "to", "Missing data for required field"),
    ({"to": "timestamp"}, "timestamp", "needs a timestamp"),
    ({"to": "timestamp", "timestamp": "last tuesday"}, "timestamp", "Not a timestamp"),
    ({"to": "timestamp", "duration": "1 hour"}, "duration", "Not a duration"),
    ({"to": "timestamp", "duration": "P1M"}, "duration", "no fixed length"),
    ({"to": "timestamp", "timestamp": 1, "duration": "PT1H"}, "duration", "not both"),
    ({"to": "offset"}, "offset", "to=offset needs offset"),
    ({"to": "offset", "offset": -1}, "offset", "greater than or equal to 0"),
    ({"to": "shift", "shift": "ten"}, "shift", "Not a valid integer"),
    ({"to": "earliest", "offset": 3}, "offset", "Only with to=offset"),
    ({"to": "earliest", "partitions": [0, 0]}, "partitions", "named twice"),
    ({"to": "earliest", "partitions": [5]}, "partitions", "partition(s) 5 not in topic"),
    ({"to": "earliest", "dry_run": "perhaps"}, "dry_run", "Not a valid boolean"),
]


def test_every_bad_reset_body_is_a_422_naming_its_field(world, topic_factory):
    client, create = world
    cid = create(topic_factory(partitions=2), "g-bad-input")
    for body, field, words in BAD_BODIES:  # one topic for all: each case costs a request, not a topic
        response = reset(client, cid, **body)
        assert response.status_code == 422, (body, response.json)
        assert set(response.json) == {"code", "status", "message", "errors"}
        assert any(words in message for message in response.json["errors"]["json"][field]), (body, response.json)


def test_kafka_refusing_a_group_with_members_is_a_409_and_nothing_changes(world, kafka_bootstrap, topic_factory):
    client, create = world
    topic = topic_factory(partitions=1)
    group = f"g-{topic}"
    produce(kafka_bootstrap, topic, 10)
    consume_all(kafka_bootstrap, topic, group, 10)
    cid = create(topic, group)
    outsider = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "enable.auto.commit": False})
    outsider.subscribe([topic])
    try:
        wait_for(lambda: outsider.poll(0.2) is None and outsider.assignment(), timeout=30,
                 message="the outside member holds the partition")
        refused = reset(client, cid, to="earliest", dry_run=False)
        assert refused.status_code == 409, refused.json
        assert "active members" in refused.json["message"]
        deleted = client.delete(f"/consumers/{cid}/offsets/")
        assert deleted.status_code == 409 and "active members" in deleted.json["message"], deleted.json
    finally:
        outsider.close()
    assert committed_offsets(kafka_bootstrap, group, topic) == {0: 10}


def test_delete_forgets_the_commit_and_refuses_a_group_shared_with_another_topic(world, kafka_bootstrap,
                                                                                 topic_factory):
    client, create = world
    topic, other = topic_factory(partitions=2), topic_factory(partitions=1)
    group = f"g-{topic}"
    produce(kafka_bootstrap, topic, 30)
    consume_all(kafka_bootstrap, topic, group, 30)
    cid = create(topic, group)
    forgotten = client.delete(f"/consumers/{cid}/offsets/")
    assert forgotten.status_code == 200, forgotten.json
    assert sum(item["from"] for item in forgotten.json["partitions"]) == 30
    assert all(item["to"] is None for item in forgotten.json["partitions"])
    assert committed_offsets(kafka_bootstrap, group, topic) == {0: -1001, 1: -1001}  # OFFSET_INVALID: none
    view = client.get(f"/consumers/{cid}/offsets/").json
    assert [p["committed"] for p in view["partitions"]] == [None, None] and view["total_lag"] == 30  # earliest
    event = client.get("/audit/", query_string={"action": "consumer.offsets_delete"}).json[0]
    assert sum(event["before"]["offsets"].values()) == 30 and event["after"]["offsets"] == {"0": None, "1": None}

    produce(kafka_bootstrap, other, 5)
    consume_all(kafka_bootstrap, other, group, 5)
    produce(kafka_bootstrap, topic, 4)
    consume_all(kafka_bootstrap, topic, group, 34)
    shared = client.delete(f"/consumers/{cid}/offsets/")
    assert shared.status_code == 409 and other in shared.json["message"], shared.json
    assert committed_offsets(kafka_bootstrap, group, other) == {0: 5}


def test_a_missing_topic_is_a_409(world):
    client, create = world
    cid = create("kcm-test-no-such-topic-offsets", "g-missing")
    response = client.get(f"/consumers/{cid}/offsets/")
    assert response.status_code == 409 and "does not exist" in response.json["message"], response.json
