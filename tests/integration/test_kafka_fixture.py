"""The Kafka fixture talks to a real broker: a group consumes everything and commits to the high watermarks."""
import uuid

from tests.support.kafka import committed_offsets, consume_all, high_watermarks, produce


def test_group_consumes_all_10000_messages_and_commits_high_watermarks(kafka_bootstrap, topic_factory):
    topic = topic_factory(partitions=3)
    produce(kafka_bootstrap, topic, 10_000)
    group = f"kcm-test-{uuid.uuid4().hex[:8]}"

    messages = consume_all(kafka_bootstrap, topic, group, expected=10_000)

    assert len(messages) == 10_000
    assert len({(m.partition(), m.offset()) for m in messages}) == 10_000
    watermarks = high_watermarks(kafka_bootstrap, topic)
    assert sum(watermarks.values()) == 10_000
    assert set(watermarks) == {0, 1, 2}
    assert committed_offsets(kafka_bootstrap, group, topic) == watermarks
