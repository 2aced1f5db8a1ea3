"""``kcm topic``: Kafka topics on the cluster kcm's consumers read (the local broker creates none by itself)."""
from __future__ import annotations

import time

import click

from api.cli import kafka
from api.cli.errors import CommandFailed


@click.group()
def topic() -> None:
    """Kafka topics."""


@topic.command("create")
@click.argument("name", callback=kafka.topic_name)
@click.option("--partitions", type=click.IntRange(1, 100_000), required=True, help="Number of partitions.")
@click.option("--replication-factor", type=click.IntRange(1, 32_767), default=1, show_default=True,
              help="Copies of each partition (at most the number of brokers).")
@kafka.kafka_options
def create(name: str, partitions: int, replication_factor: int, bootstrap: str, timeout: float) -> None:
    """Create topic NAME. An existing NAME with the same partition count is fine (exit 0), so scripts can
    re-run; with another partition count it is an error (exit 1)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    admin = kafka.admin_client(bootstrap)
    existing = kafka.cluster_topics(admin, bootstrap, timeout).get(name)
    if existing is None:
        future = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)],
                                     request_timeout=timeout, operation_timeout=timeout)[name]
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # else created meanwhile: compare below
                raise CommandFailed(f"Kafka refused to create topic {name!r}: {exc.args[0].str()}") from None
        else:
            _wait_for_leaders(admin, bootstrap, name, partitions, timeout)
            click.echo(f"created topic {name} ({partitions} partitions, replication factor {replication_factor})")
            return
        existing = kafka.require_topic(kafka.cluster_topics(admin, bootstrap, timeout), name)
    found = len(existing.partitions)
    if found != partitions:
        raise CommandFailed(f"topic {name} already exists with {found} partitions, not {partitions}")
    click.echo(f"topic {name} already exists ({found} partitions)")


def _wait_for_leaders(admin, bootstrap: str, name: str, partitions: int, timeout: float) -> None:
    # so that a `kcm produce` right after finds every partition led, not UNKNOWN_TOPIC for a moment
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metadata = kafka.cluster_topics(admin, bootstrap, timeout).get(name)
        if metadata is not None and metadata.error is None and len(metadata.partitions) == partitions and all(
                p.leader >= 0 for p in metadata.partitions.values()):
            return
        time.sleep(0.1)
    raise CommandFailed(f"topic {name} was created but its partitions have no leader after {timeout:g} s")
