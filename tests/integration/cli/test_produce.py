"""`kcm produce` delivers stdin lines or generated JSON records and says how many; a failed delivery exits 1."""
import json
import re
import uuid

from confluent_kafka.admin import NewTopic

from tests.support.kafka import consume_all


def test_produce_count_sends_generated_json_records_that_read_back(kcm, kafka_bootstrap, topic_factory):
    topic = topic_factory(partitions=3)
    done = kcm("produce", topic, "--count", "25")
    assert done.returncode == 0, done.err
    assert done.out.startswith(f"delivered 25 of 25 messages to {topic} (run ")
    run = done.out.strip().rsplit(" ", 1)[-1].rstrip(")")

    records = [json.loads(m.value()) for m in consume_all(kafka_bootstrap, topic, f"g-{uuid.uuid4().hex}", 25)]
    assert sorted(r["seq"] for r in records) == list(range(25))
    assert {r["run"] for r in records} == {run}
    assert all(r["ts"].endswith("+00:00") for r in records)


def test_produce_sends_each_stdin_line_as_one_message_with_the_key(kcm, kafka_bootstrap, topic_factory):
    topic = topic_factory(partitions=2)
    done = kcm("produce", topic, "--key", "order-7", input="first line\nsecond, with ünïcode\n\nlast".encode())
    assert done.returncode == 0, done.err
    assert done.out.strip() == f"delivered 4 of 4 messages to {topic}"

    messages = consume_all(kafka_bootstrap, topic, f"g-{uuid.uuid4().hex}", 4)
    assert [m.value().decode() for m in messages] == ["first line", "second, with ünïcode", "", "last"]
    assert {m.key() for m in messages} == {b"order-7"}
    assert len({m.partition() for m in messages}) == 1  # one key, one partition, order kept


def test_bootstrap_option_overrides_the_environment(kcm, kafka_bootstrap, topic_factory):
    topic = topic_factory()
    done = kcm("produce", topic, "--count", "1", "--bootstrap", kafka_bootstrap,
               env={"KCM_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert done.returncode == 0, done.err


def test_produce_to_a_missing_topic_exits_1_and_says_how_to_create_it(kcm, new_topic_name, kafka_admin):
    done = kcm("produce", new_topic_name, "--count", "1")
    assert done.returncode == 1
    assert f"kcm topic create {new_topic_name} --partitions N" in done.err
    assert new_topic_name not in kafka_admin.list_topics(timeout=10).topics


def test_a_message_the_broker_refuses_makes_produce_exit_1(kcm, kafka_admin, new_topic_name):
    kafka_admin.create_topics([NewTopic(new_topic_name, 1, 1, config={"max.message.bytes": "200"})])[
        new_topic_name].result(30)
    done = kcm("produce", new_topic_name, input=b"small\n" + b"x" * 1000 + b"\n")
    assert done.returncode == 1
    # the small message may share the refused batch: at least the big one is reported
    assert re.match(rf"Error: [12] of 2 messages to {new_topic_name} were not delivered: ", done.err), done.err
    assert "too large" in done.err.lower()
