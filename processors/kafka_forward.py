"""``kafka_forward``: produces each message to a topic on the same or another Kafka cluster.

Idempotent producer (``enable.idempotence``, ``acks=all``); key, headers and timestamp are preserved; the
topic may be renamed. ``flush()`` waits for every delivery report of the batch and raises if any failed, so
the source offsets advance only once the whole batch is in the target. A failed batch is produced again on
retry (duplicates in the target are possible then: at-least-once); the producer is rebuilt after a failure so
references (``${env:NAME}``) in ``bootstrap_servers``/``security`` are re-read.
"""
from __future__ import annotations

import logging

from confluent_kafka import KafkaException, Producer
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from processors.base import BaseProcessor, FatalError, RetriableError
from processors.references import is_reference, resolve
from schema import names

log = logging.getLogger(__name__)

_SECRET_WORDS = ("password", "secret", "key.pem", "token")
_FORCED = {"enable.idempotence": True, "acks": "all"}


def _validate_security(value: dict) -> None:
    leaked = [k for k, v in value.items() if any(w in k for w in _SECRET_WORDS) and not is_reference(v)]
    if leaked:
        raise ValidationError(f"{', '.join(sorted(leaked))}: secrets must be references such as ${{env:NAME}}")
    forced = sorted(set(value) & (set(_FORCED) | {"bootstrap.servers"}))
    if forced:
        raise ValidationError(f"{', '.join(forced)} cannot be overridden here")


def _validate_topic(value: str | None) -> None:
    if value is not None and not names.is_topic(value):
        raise ValidationError(names.TOPIC_MESSAGE)


class BootstrapServers(fields.Field):
    """The consumer's own forms (``schema.names.bootstrap_servers``), loaded as the list, or a reference."""

    def _deserialize(self, value, attr, data, **kwargs):
        if is_reference(value):
            return value
        try:
            return names.bootstrap_servers(value)
        except names.InvalidEntries as exc:
            raise ValidationError({index: [message] for index, message in exc.entries.items()}) from None
        except names.InvalidName as exc:
            raise ValidationError(f"{exc} Or a ${{env:NAME}} / ${{file:/path}} reference.") from None


class KafkaForwardConfig(Schema):
    class Meta:
        unknown = RAISE

    topic = fields.String(load_default=None, allow_none=True, validate=_validate_topic,
                          metadata={"description": "target topic; default: the source topic's name"})
    bootstrap_servers = BootstrapServers(load_default=None, allow_none=True, metadata={
        "description": "target cluster: a list of 'host:port', one 'host:port,...' string or a ${env:NAME} "
                       "reference; default: the consumer's own cluster, with its security settings"})
    security = fields.Dict(keys=fields.String(), values=fields.Raw(), load_default=dict,
                           validate=_validate_security, metadata={
                               "description": "librdkafka security settings; secrets as ${env:NAME} references"})
    delivery_timeout_ms = fields.Integer(load_default=30_000, validate=validate.Range(min=100), metadata={
        "description": "how long one delivery may take before the batch fails (message.timeout.ms)"})
    linger_ms = fields.Integer(load_default=5, validate=validate.Range(min=0, max=10_000))
    compression_type = fields.String(load_default="none",
                                     validate=validate.OneOf(["none", "gzip", "snappy", "lz4", "zstd"]))


class KafkaForwardProcessor(BaseProcessor):
    ConfigSchema = KafkaForwardConfig
    description = "Produces messages to a topic on the same or another cluster (idempotent, acks=all)"

    _producer: Producer | None = None

    @classmethod
    def canonical_config(cls, raw: dict) -> dict:
        """A ``"h1:9092,h2:9092"`` string is stored as the list, like a consumer's bootstrap_servers."""
        config = dict(raw)
        servers = config.get("bootstrap_servers")
        if isinstance(servers, str) and not is_reference(servers):
            try:
                config["bootstrap_servers"] = names.bootstrap_servers(servers)
            except names.InvalidName:
                pass  # stays as given: the schema reports what is wrong with it
        return config

    def open(self) -> None:
        self._failed: list = []
        self._produced = 0
        if not self.config["bootstrap_servers"] and not self.config["topic"]:
            raise FatalError("kafka_forward to the consumer's own cluster needs a different 'topic' (it would loop)")
        self._producer = self._make_producer()

    def _bootstrap(self) -> str:
        servers = self.config["bootstrap_servers"]
        if servers is None:
            return self.context.bootstrap_servers
        if isinstance(servers, list):
            return ",".join(servers)
        resolved = resolve(servers, what="kafka_forward bootstrap_servers")
        try:
            return ",".join(names.bootstrap_servers(resolved))
        except names.InvalidName as exc:  # the message names entries by index, never the resolved value
            raise FatalError(f"kafka_forward bootstrap_servers reference: {exc}") from exc

    def _security(self) -> dict:
        """Its own settings; to the consumer's own cluster without any, the consumer's (the same credentials)."""
        if self.config["bootstrap_servers"] is None and not self.config["security"]:
            return dict(self.context.security)
        return self.config["security"]

    def _make_producer(self) -> Producer:
        conf = {k: resolve(v, what=f"kafka_forward security {k}") if isinstance(v, str) else v
                for k, v in self._security().items()}
        conf.update(_FORCED)
        conf.update({
            "bootstrap.servers": self._bootstrap(),
            "message.timeout.ms": self.config["delivery_timeout_ms"],
            "linger.ms": self.config["linger_ms"],
            "compression.type": self.config["compression_type"],
            "client.id": f"kcm-forward-{self.processor_id}",
            "error_cb": self._on_client_error,
        })
        try:
            return Producer(conf)
        except KafkaException as exc:
            raise FatalError(f"kafka_forward producer configuration rejected: {exc}") from exc

    def _on_client_error(self, err) -> None:
        if err.fatal():
            self._failed.append(err)
        log.warning("kafka_forward %s: %s", self.processor_id, err.str())

    def _on_delivery(self, err, _msg) -> None:
        if err is not None:
            self._failed.append(err)

    def process(self, batch) -> None:
        if self._producer is None:
            self._producer = self._make_producer()
        rename = self.config["topic"]
        produce, on_delivery = self._producer.produce, self._on_delivery
        for m in batch:
            timestamp_type, timestamp = m.timestamp()
            kwargs = {"value": m.value(), "key": m.key(), "headers": m.headers(), "on_delivery": on_delivery,
                      "timestamp": timestamp if timestamp_type else 0}
            while True:
                try:
                    produce(rename or m.topic(), **kwargs)
                    break
                except BufferError:  # the local queue is full: serve delivery reports, then try again
                    self._producer.poll(0.05)
        self._produced += len(batch)

    def flush(self) -> None:
        if self._producer is None:
            return
        # message.timeout.ms bounds every delivery; the margin covers the last report's round trip
        remaining = self._producer.flush(self.config["delivery_timeout_ms"] / 1000 + 5)
        failed, produced = list(self._failed), self._produced
        self._failed.clear()
        self._produced = 0
        if remaining or failed:
            self._reset_producer()
            first = failed[0].str() if failed else "no delivery report"
            if any(getattr(e, "fatal", lambda: False)() for e in failed):
                log.error("kafka_forward %s: fatal producer error, rebuilding the producer", self.processor_id)
            raise RetriableError(f"kafka_forward: {len(failed) + remaining} of {produced} deliveries failed "
                                 f"(first: {first})")

    def discard(self) -> None:
        self._failed = []
        self._produced = 0

    def _reset_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.purge()  # drop what is still queued: the retry produces the batch again
            producer.flush(0)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.config["delivery_timeout_ms"] / 1000)
            self._producer = None
