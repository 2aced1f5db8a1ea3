"""`kcm offsets reset` by timestamp, duration, offset and latest on a stopped consumer: a dry run prints the plan and
changes nothing; --execute moves the group's committed offsets to where the API's own dry run says."""
from __future__ import annotations

import time
from datetime import UTC, datetime

from confluent_kafka import Consumer, Producer, TopicPartition

PER_PARTITION = 150
OLD, RECENT = 100, 50  # per partition: messages three hours old, then messages half an hour old
SECOND_MS = 1000


def produce_with_timestamps(bootstrap: str, topic: str, partitions: int, old_start_ms: int, recent_start_ms: int):
    """Offset i of every partition: ``old_start_ms + i s`` for the first OLD, then ``recent_start_ms + (i - OLD) s``."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    failures = []
    for partition in range(partitions):
        for i in range(PER_PARTITION):
            when = old_start_ms + i * SECOND_MS if i < OLD else recent_start_ms + (i - OLD) * SECOND_MS
            producer.produce(topic, value=f"m-{partition}-{i}".encode(), partition=partition, timestamp=when,
                             on_delivery=lambda err, _msg: err and failures.append(err))
    assert producer.flush(30) == 0 and not failures, failures


def commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """The group's committed offsets set from outside kcm (a group without members, as a stopped consumer's is)."""
    client = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        client.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        client.close()


def test_reset_by_timestamp_duration_offset_and_latest_dry_run_then_execute(cli, live_api, consumer_file,
                                                                           topic_factory, kafka_bootstrap):
    topic = topic_factory(partitions=2)
    group = f"cli-{topic}"
    now_ms = int(time.time() * 1000)
    old_start_ms, recent_start_ms = now_ms - 3 * 3600 * SECOND_MS, now_ms - 1800 * SECOND_MS
    produce_with_timestamps(kafka_bootstrap, topic, 2, old_start_ms, recent_start_ms)
    created = cli("consumers", "create", "-f", consumer_file({
        "name": "cli-rewound", "bootstrap_servers": [kafka_bootstrap], "topic": topic,
        "consumer_group": group,
        "downstream_processors": [{"processor_type": "file_sink", "config": {"file_path": "rewound.log"}}]}))
    assert created.returncode == 0, created.err
    cid = created.json["id"]
    assert live_api.get(f"/consumers/{cid}/")["desired_state"] == "stopped"
    commit(kafka_bootstrap, group, topic, {0: 10, 1: 20})

    def committed() -> dict[int, int | None]:
        return {p["partition"]: p["committed"] for p in live_api.get(f"/consumers/{cid}/offsets/")["partitions"]}

    assert committed() == {0: 10, 1: 20}
    forty_seconds_in = datetime.fromtimestamp((old_start_ms + 40 * SECOND_MS) / 1000, UTC)
    cases = [  # (CLI options, the API's body, the committed offsets expected after --execute)
        (["--to", "timestamp", "--timestamp", forty_seconds_in.isoformat().replace("+00:00", "Z")],
         {"to": "timestamp", "timestamp": old_start_ms + 40 * SECOND_MS}, {0: 40, 1: 40}),
        (["--to", "timestamp", "--duration", "PT1H"],  # the first message of the last hour: the first recent one
         {"to": "timestamp", "duration": "PT1H"}, {0: OLD, 1: OLD}),
        (["--to", "offset", "--offset", "120", "--partition", "1"],
         {"to": "offset", "offset": 120, "partitions": [1]}, {0: OLD, 1: 120}),
        (["--to", "latest"], {"to": "latest"}, {0: PER_PARTITION, 1: PER_PARTITION}),
    ]
    for options, body, expected in cases:
        before = committed()
        status, api_plan = live_api.call("POST", f"/consumers/{cid}/offsets/reset/", json={**body, "dry_run": True})
        assert status == 200, (options, api_plan)
        moves = [(m["partition"], m["from"], m["to"]) for m in api_plan["partitions"]]
        assert {p: to for p, _, to in moves} == {p: o for p, o in expected.items() if p in {m[0] for m in moves}}

        dry = cli("offsets", "reset", "cli-rewound", *options, "-o", "table")
        assert dry.returncode == 0, (options, dry.err)
        lines = dry.out.splitlines()
        assert lines[0] == "dry run, nothing changed (add --execute to move them):", options
        assert lines[1].split() == ["PARTITION", "FROM", "TO"]
        assert [tuple(int(v) for v in line.split()) for line in lines[2:]] == moves, options
        assert committed() == before, options  # a dry run changes nothing

        done = cli("offsets", "reset", "cli-rewound", *options, "--execute")
        assert done.returncode == 0, (options, done.err)
        assert done.json == {"dry_run": False, "partitions": api_plan["partitions"]}, options
        assert committed() == expected, options
