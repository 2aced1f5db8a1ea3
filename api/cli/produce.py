"""``kcm produce``: send messages to a topic, from stdin (one per line) or generated (``--count``)."""
from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import click

from api.cli import kafka
from api.cli.errors import CommandFailed


def generated_records(count: int, run: str) -> Iterator[bytes]:
    """``count`` JSON records; ``run`` tells this invocation's records apart from earlier ones in the topic."""
    for seq in range(count):
        ts = datetime.now(UTC).isoformat(timespec="milliseconds")
        yield json.dumps({"seq": seq, "run": run, "ts": ts}).encode()


def stdin_lines(stream) -> Iterator[bytes]:
    for line in stream:
        yield line.rstrip(b"\r\n") if line.endswith(b"\n") else line


@click.command()
@click.argument("topic", callback=kafka.topic_name)
@click.option("--key", help="Key of every message (default none: the partitioner spreads them).")
@click.option("--count", type=click.IntRange(1, 10_000_000),
              help='Send COUNT generated JSON records ({"seq": i, "run": ..., "ts": ...}) instead of stdin.')
@kafka.kafka_options
def produce(topic: str, key: str | None, count: int | None, bootstrap: str, timeout: float) -> None:
    """Send messages to TOPIC: each line of stdin is one message, or --count generated records. Waits until
    Kafka acknowledged every message and reports how many it did; any message not delivered exits 1."""
    from confluent_kafka import Producer

    producer = Producer(kafka.client_config(bootstrap, **{
        "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": int(timeout * 1000)}))
    kafka.require_topic(kafka.cluster_topics(producer, bootstrap, timeout), topic)
    run = None
    if count is not None:
        run = uuid.uuid4().hex[:12]
        values = generated_records(count, run)
    else:
        if sys.stdin.isatty():
            click.echo("reading messages from stdin, one per line; Ctrl-D sends them", err=True)
        values = stdin_lines(sys.stdin.buffer)
    report = _Deliveries()
    sent = 0
    encoded_key = key.encode() if key is not None else None
    for value in values:
        while True:
            try:
                producer.produce(topic, value=value, key=encoded_key, on_delivery=report)
                break
            except BufferError:  # the local queue is full: let librdkafka send some first
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
    undelivered = producer.flush(timeout)
    tag = f" (run {run})" if run else ""
    if report.failed or undelivered:
        reason = report.first_error or f"no acknowledgement within {timeout:g} s"
        raise CommandFailed(f"{report.failed + undelivered} of {sent} messages to {topic} were not delivered"
                            f"{tag}: {reason}")
    click.echo(f"delivered {report.delivered} of {sent} messages to {topic}{tag}")


class _Deliveries:
    """librdkafka's delivery callback: counts acknowledgements and keeps the first failure's reason."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.first_error: str | None = None

    def __call__(self, error, _message) -> None:
        if error is None:
            self.delivered += 1
            return
        self.failed += 1
        if self.first_error is None:
            self.first_error = error.str()
