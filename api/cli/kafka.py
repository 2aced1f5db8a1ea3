"""What the Kafka commands share: the ``--bootstrap``/``--timeout`` options and the clients built from them.

confluent-kafka is imported when a command runs, not with the CLI. librdkafka's own log lines (connection
refused, retries ...) go to a silent logger: the command reports the outcome itself, in one line.
"""
from __future__ import annotations

import logging

import click

from api.cli.errors import CannotConnect, CommandFailed
from schema import names
from schema.settings import Settings

CLIENT_ID = "kcm-cli"
DEFAULT_TIMEOUT = 15.0

_librdkafka_log = logging.getLogger("kcm.cli.librdkafka")
_librdkafka_log.addHandler(logging.NullHandler())
_librdkafka_log.propagate = False


def _bootstrap(ctx, param, value: str) -> str:
    try:
        return ",".join(names.bootstrap_servers(value))
    except names.InvalidName as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def topic_name(ctx, param, value: str) -> str:
    """Click callback: the topic rule of ``schema.names``, a usage error (exit 2) when broken."""
    try:
        return names.check_topic(value)
    except names.InvalidName as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def kafka_options(command):
    """``--bootstrap`` (``KCM_KAFKA_BOOTSTRAP``, default the local stack) and ``--timeout``."""
    command = click.option(
        "--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT, show_default=True, metavar="SECONDS",
        help="Longest wait for Kafka to answer (and to acknowledge the last message).")(command)
    return click.option(
        "--bootstrap", envvar="KCM_KAFKA_BOOTSTRAP", show_envvar=True, metavar="HOST:PORT[,...]",
        default=Settings.from_env({}).kafka_bootstrap, show_default=True,
        callback=_bootstrap, help="Kafka brokers to talk to.")(command)


def client_config(bootstrap: str, **extra) -> dict:
    return {"bootstrap.servers": bootstrap, "client.id": CLIENT_ID, "logger": _librdkafka_log, **extra}


def admin_client(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient(client_config(bootstrap))


def cluster_topics(client, bootstrap: str, timeout: float) -> dict:
    """Every topic's metadata (``name -> TopicMetadata``); ``CannotConnect`` when no broker answers.

    Asks for all topics, never one by name: a metadata request naming a topic can auto-create it."""
    from confluent_kafka import KafkaException

    try:
        return client.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise CannotConnect(f"cannot reach Kafka at {bootstrap} within {timeout:g} s "
                            f"({exc.args[0].str()}); is it running? `make run` starts the local one") from None


def require_topic(topics: dict, name: str):
    """The topic's metadata, or a refusal that says how to create it."""
    metadata = topics.get(name)
    if metadata is None:
        raise CommandFailed(f"topic {name!r} does not exist; create it with "
                            f"`kcm topic create {name} --partitions N`")
    if metadata.error is not None:
        raise CommandFailed(f"topic {name!r} is not usable: {metadata.error.str()}")
    return metadata
