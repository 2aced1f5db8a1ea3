"""Field validators shared by the API schemas: Kafka names, hosts, ports, broker addresses and librdkafka
security settings.

The rules themselves live in ``schema`` (shared with the processors and the worker): names in ``schema.names``,
the broker address policy in ``schema.brokers``, the librdkafka allowlist in ``schema.kafka_settings``, secret
references in ``schema.secrets``. Here they become marshmallow validators and fields."""
from __future__ import annotations

from marshmallow import ValidationError, fields

from schema import kafka_settings, names
from schema.brokers import BrokerPolicy
from schema.names import HOST_PORT_MESSAGE, MAX_BOOTSTRAP_SERVERS, TOPIC_MESSAGE, is_host
from schema.secrets import SecretPolicy

__all__ = ["TOPIC_MESSAGE", "HOST_PORT_MESSAGE", "MAX_BOOTSTRAP_SERVERS", "is_host"]

# documentation-only patterns (OpenAPI); schema.names holds the real, stricter checks
HOST_PATTERN = (
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
    r"|^[0-9A-Fa-f:.]+$"
)
HOST_PORT_PATTERN = r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$"
TOPIC_PATTERN = r"^[a-zA-Z0-9._-]{1,249}$"


def validate_topic(value: str) -> None:
    try:
        names.check_topic(value)
    except names.InvalidName as exc:
        raise ValidationError(str(exc)) from None


def validate_not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must not be empty or blank.")


def current_settings():
    """The serving app's settings (the environment's outside a request)."""
    from flask import current_app, has_app_context

    from api.context import EXTENSION  # here: api.context imports the services, which import the schemas

    services = current_app.extensions.get(EXTENSION) if has_app_context() else None
    if services is None:
        from schema.settings import Settings

        return Settings.from_env()
    return services.settings


def broker_policy() -> BrokerPolicy:
    try:
        return BrokerPolicy.of(current_settings())
    except ValueError as exc:  # a malformed KCM_ALLOWED_BROKERS: the deployment's fault, said plainly
        raise ValidationError(str(exc)) from None


def validate_host(value: str) -> None:
    if not is_host(value):
        raise ValidationError("Not a valid hostname or IP address.")
    message = broker_policy().check_host(value)
    if message is not None:
        raise ValidationError(message)


def validate_host_port(value: str) -> None:
    """``host:port`` with an IPv6 host in brackets (``[::1]:9092``)."""
    try:
        names.check_host_port(value)
    except names.InvalidName as exc:
        raise ValidationError(str(exc)) from None


class BootstrapServers(fields.List):
    """A cluster's ``host:port`` list, given as a list or as one ``"h1:9092,h2:9092"`` string; loads as the list
    (``schema.names.bootstrap_servers``, the rule the kafka_forward processor uses too)."""

    def __init__(self, **kwargs):
        super().__init__(fields.String(metadata={"pattern": HOST_PORT_PATTERN}), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            servers = names.bootstrap_servers(value)
        except names.InvalidEntries as exc:
            # valid_data as fields.List gives it: the schema-level broker-form check still sees the good entries
            raise ValidationError({index: [message] for index, message in exc.entries.items()},
                                  valid_data=exc.valid) from None
        except names.InvalidName as exc:
            raise ValidationError(str(exc)) from None
        refused = broker_policy().check_servers(servers)
        if refused:
            raise ValidationError({index: [message] for index, message in refused.items()},
                                  valid_data=[s for i, s in enumerate(servers) if i not in refused]) from None
        return servers


def validate_security(settings: dict) -> None:
    """The allowlist of ``schema.kafka_settings``: errors keyed by setting name."""
    current = current_settings()
    try:
        policies = SecretPolicy.of(current), BrokerPolicy.of(current)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    errors = kafka_settings.check(settings, *policies)
    if errors:
        raise ValidationError(errors)
