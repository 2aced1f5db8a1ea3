"""``kafka_forward``: produces each message to a topic on the same or another Kafka cluster.

Idempotent producer (``enable.idempotence``, ``acks=all``); key, headers and timestamp are preserved; the
topic may be renamed. ``flush()`` waits for every delivery report of the batch and raises if any failed, so
the source offsets advance only once the whole batch is in the target. A failed batch is produced again on
retry (duplicates in the target are possible then: at-least-once); the producer is rebuilt after a failure so
references (``${env:KCM_SECRET_...}``) in ``bootstrap_servers``/``security`` are re-read.

``security`` takes the allowlisted librdkafka settings of ``schema.kafka_settings`` and the target cluster must
pass the broker address policy (``schema.brokers``), checked at the API and again once references are resolved.
"""
from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException, Producer
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from marshmallow.experimental.context import Context

from processors.base import BaseProcessor, FatalError, PoisonMessageError, RetriableError
from processors.checks import Check, probe_topic
from schema import kafka_settings, names, secrets
from schema.brokers import BrokerPolicy, host_of
from schema.secrets import Redactor, SecretPolicy

log = logging.getLogger(__name__)

_FORCED = {"enable.idempotence": True, "acks": "all"}


def _policies() -> tuple[SecretPolicy | None, BrokerPolicy]:
    """The API's settings from marshmallow's Context; elsewhere the grammar now and the policy at open()."""
    settings = Context.get({}).get("settings")
    if settings is None:
        return None, BrokerPolicy()
    try:
        return SecretPolicy.of(settings), BrokerPolicy.of(settings)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class SecuritySettings(fields.Dict):
    """The allowlist of ``schema.kafka_settings``, its errors keyed by setting name (a validator's would be
    wrapped in a list)."""

    def _deserialize(self, value, attr, data, **kwargs):
        settings = super()._deserialize(value, attr, data, **kwargs)
        errors = kafka_settings.check(settings, *_policies())
        if errors:
            raise ValidationError(errors)
        return settings


def _validate_topic(value: str | None) -> None:
    if value is not None and not names.is_topic(value):
        raise ValidationError(names.TOPIC_MESSAGE)


class BootstrapServers(fields.Field):
    """The consumer's own forms (``schema.names.bootstrap_servers``), loaded as the list, or a reference."""

    def _deserialize(self, value, attr, data, **kwargs):
        secret_policy, brokers = _policies()
        if secrets.looks_like_reference(value):
            problem = secrets.check(value, secret_policy)
            if problem is not None:
                raise ValidationError(problem)
            return value
        try:
            servers = names.bootstrap_servers(value)
        except names.InvalidEntries as exc:
            raise ValidationError({index: [message] for index, message in exc.entries.items()}) from None
        except names.InvalidName as exc:
            raise ValidationError(f"{exc} Or a ${{env:NAME}} / ${{file:/path}} reference.") from None
        refused = brokers.check_servers(servers)
        if refused:
            raise ValidationError({index: [message] for index, message in refused.items()})
        return servers


class KafkaForwardConfig(Schema):
    class Meta:
        unknown = RAISE

    topic = fields.String(load_default=None, allow_none=True, validate=_validate_topic,
                          metadata={"description": "target topic; default: the source topic's name"})
    bootstrap_servers = BootstrapServers(load_default=None, allow_none=True, metadata={
        "description": "target cluster: a list of 'host:port', one 'host:port,...' string or a secret reference; "
                       "default: the consumer's own cluster, with its security settings. Every host must pass "
                       "KCM_ALLOWED_BROKERS (docs/security.md)"})
    security = SecuritySettings(keys=fields.String(), values=fields.Raw(), load_default=dict, metadata={
                               "description": "allowlisted librdkafka security settings (docs/security.md); "
                                              "secrets as ${env:KCM_SECRET_...} / ${file:...} references"})
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
        if isinstance(servers, str) and not secrets.looks_like_reference(servers):
            try:
                config["bootstrap_servers"] = names.bootstrap_servers(servers)
            except names.InvalidName:
                pass  # stays as given: the schema reports what is wrong with it
        return config

    @classmethod
    def check(cls, config: dict, context) -> list[Check]:
        """The target cluster answers and the target topic exists (nothing is produced or created)."""
        probe = cls(config, context=context)
        probe._redact = Redactor()
        topic = config["topic"] or context.topic
        what = "kafka_forward target"
        if not config["bootstrap_servers"] and not config["topic"]:
            return [Check(what, False, "Forwarding to the consumer's own cluster needs a different 'topic' "
                                       "(it would loop).")]
        try:
            conf = kafka_settings.resolve(probe._security(), *probe._policies(), redactor=probe._redact)
            conf["bootstrap.servers"] = probe._bootstrap()
        except (FatalError, kafka_settings.SettingRefused, secrets.SecretError) as exc:
            return [Check(what, False, probe._redact(str(exc)))]
        return probe_topic(conf, topic, what=what, redact=probe._redact)

    def open(self) -> None:
        self._redact = Redactor()
        self._failed: list = []
        self._produced = 0
        if not self.config["bootstrap_servers"] and not self.config["topic"]:
            raise FatalError("kafka_forward to the consumer's own cluster needs a different 'topic' (it would loop)")
        self._producer = self._make_producer()

    def _policies(self) -> tuple[SecretPolicy, BrokerPolicy]:
        try:
            return SecretPolicy.of(self.context.settings), BrokerPolicy.of(self.context.settings)
        except ValueError as exc:  # KCM_ALLOWED_BROKERS itself is malformed
            raise FatalError(f"kafka_forward: {exc}") from None

    def _bootstrap(self) -> str:
        """The target's brokers, resolved and checked against the broker policy again (a row planted by hand,
        or a reference whose value changed, gets no further than the API would have let it)."""
        servers = self.config["bootstrap_servers"]
        if servers is None:
            return self.context.bootstrap_servers  # the worker checked the consumer's own cluster
        secret_policy, brokers = self._policies()
        shown = servers if isinstance(servers, str) else None
        if isinstance(servers, str):
            try:
                resolved = secrets.resolve(servers, secret_policy)
            except secrets.SecretError as exc:
                raise FatalError(f"kafka_forward bootstrap_servers: {exc}") from None
            self._redact.add(servers, resolved)
            try:
                servers = names.bootstrap_servers(resolved)
            except names.InvalidName as exc:  # the message names entries by index, never the resolved value
                raise FatalError(f"kafka_forward bootstrap_servers reference {shown}: {exc}") from None
        refused = brokers.check_servers(servers) or brokers.check_resolved(servers)
        if refused:
            index, message = next(iter(refused.items()))
            host = host_of(servers[index]) if shown is None else f"from {shown}"
            raise FatalError(f"BrokerNotAllowed: kafka_forward bootstrap_servers entry {index} ({host}): {message}")
        return ",".join(servers)

    def _security(self) -> dict:
        """Its own settings; to the consumer's own cluster without any, the consumer's (the same credentials)."""
        if self.config["bootstrap_servers"] is None and not self.config["security"]:
            return dict(self.context.security)
        return self.config["security"]

    def _make_producer(self) -> Producer:
        security = self._security()
        secret_policy, brokers = self._policies()
        try:
            conf = kafka_settings.resolve(security, secret_policy, brokers, redactor=self._redact)
        except kafka_settings.SettingRefused as exc:
            raise FatalError(f"kafka_forward security settings refused: {exc}") from None
        except secrets.SecretError as exc:
            raise FatalError(f"kafka_forward security: {exc}") from None
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
            text = kafka_settings.refused_message(exc.args[0].str(), security, self._redact)
            raise FatalError(f"kafka_forward producer configuration rejected: {text}") from None

    def _on_client_error(self, err) -> None:
        if err.fatal():
            self._failed.append(err)
        log.warning("kafka_forward %s: %s", self.processor_id, self._redact(err.str()))

    # the message itself is refused (too large, malformed for the broker): retrying the batch cannot help
    DATA_ERROR_CODES = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD,
                                  KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_MSG,
                                  KafkaError.INVALID_MSG_SIZE})

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
                except KafkaException as exc:  # refused locally before it is queued (e.g. larger than allowed)
                    err = exc.args[0]
                    if err.code() in self.DATA_ERROR_CODES:
                        raise PoisonMessageError(f"kafka_forward: {m.topic()}/{m.partition()}@{m.offset()} "
                                                 f"refused: {err.name()}") from None
                    raise RetriableError(f"kafka_forward: produce failed: {err.name()}") from None
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
            first = self._redact(failed[0].str()) if failed else "no delivery report"
            if any(getattr(e, "fatal", lambda: False)() for e in failed):
                log.error("kafka_forward %s: fatal producer error, rebuilding the producer", self.processor_id)
            if failed and not remaining and all(e.code() in self.DATA_ERROR_CODES for e in failed):
                raise PoisonMessageError(f"kafka_forward: {len(failed)} of {produced} messages refused by the "
                                         f"target (first: {first})")
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
