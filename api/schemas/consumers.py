"""Schemas of the consumer resource (the seed's field names) and of the control calls."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.schemas.common import RejectReadOnly, UTCDateTime
from api.schemas.processors import ProcessorIn, ProcessorOut
from api.schemas.validators import (
    HOST_PATTERN,
    MAX_BOOTSTRAP_SERVERS,
    TOPIC_PATTERN,
    BootstrapServers,
    validate_host,
    validate_not_blank,
    validate_security,
    validate_topic,
)
from schema import names
from schema.states import ConsumerStatus, DesiredState

CONSUMER_READ_ONLY = ("id", "status", "desired_state", "generation", "created_at", "updated_at")
OFFSET_RESETS = ("earliest", "latest")
MAX_PROCESSORS = 50


class Placement(fields.Raw):
    """Labels a supervisor must carry to run the consumer (schema/placement.py): a map, or 'key=value' strings."""

    def _deserialize(self, value, attr, data, **kwargs):
        from schema.placement import LabelError, normalize

        try:
            return normalize(value)
        except LabelError as exc:
            raise ValidationError(str(exc)) from None


class SecuritySettings(fields.Dict):
    """A dict whose errors stay keyed by setting name (a validator would wrap them in a list)."""

    def _deserialize(self, value, attr, data, **kwargs):
        settings = super()._deserialize(value, attr, data, **kwargs)
        validate_security(settings)
        return settings


def validate_consumer_name(value: str) -> None:
    try:
        names.check_consumer_name(value)
    except names.InvalidName as exc:
        raise ValidationError(str(exc)) from exc


NAME_METADATA = {"description": "Optional unique name; every /consumers/{id}/... path accepts it for the id",
                 "pattern": f"^{names.CONSUMER_NAME_PATTERN}$", "maxLength": 100}


def check_broker_form(broker_ip, broker_port, bootstrap_servers) -> None:
    """Exactly one of the two ways to name the cluster: broker_ip + broker_port, or bootstrap_servers."""
    single = broker_ip is not None or broker_port is not None
    if single and bootstrap_servers is not None:
        message = "Give either bootstrap_servers or broker_ip/broker_port, not both."
        raise ValidationError({"bootstrap_servers": [message]})
    if not single and bootstrap_servers is None:
        message = "Missing data for required field (or give bootstrap_servers)."
        raise ValidationError({"broker_ip": [message], "broker_port": [message]})
    missing = {name: ["Missing data for required field."]
               for name, value in (("broker_ip", broker_ip), ("broker_port", broker_port)) if value is None}
    if single and missing:
        raise ValidationError(missing)


def _fields(*, creating: bool) -> dict:
    """The writable consumer fields; on create they carry defaults, on PATCH every one is optional."""
    default = (lambda value: {"load_default": value}) if creating else (lambda value: {})
    return {
        "name": fields.String(allow_none=True, validate=validate_consumer_name, metadata=NAME_METADATA,
                              **default(None)),
        "broker_ip": fields.String(
            allow_none=not creating,
            validate=[validate.Length(min=1, max=253), validate_host],
            metadata={
                "description": "Kafka broker host or IP (with broker_port; or use bootstrap_servers); must pass "
                "KCM_ALLOWED_BROKERS",
                "pattern": HOST_PATTERN,
            },
        ),
        "broker_port": fields.Integer(
            strict=True, allow_none=not creating, validate=validate.Range(min=1, max=65535)
        ),
        "bootstrap_servers": BootstrapServers(
            allow_none=not creating,
            metadata={
                "description": f"'host:port' entries of a multi-broker cluster (1-{MAX_BOOTSTRAP_SERVERS}), as a "
                "list or as one comma-separated string; stored as the list"
            },
        ),
        "topic": fields.String(
            required=creating, validate=validate_topic, metadata={"pattern": TOPIC_PATTERN}
        ),
        "consumer_group": fields.String(
            required=creating, validate=[validate.Length(min=1, max=255), validate_not_blank]
        ),
        "client_id": fields.String(allow_none=True, validate=validate.Length(max=255), **default(None)),
        "replicas": fields.Integer(
            strict=True,
            validate=validate.Range(min=1, max=64),
            metadata={"description": "Worker processes (one Kafka group member each)"},
            **default(1),
        ),
        "auto_offset_reset": fields.String(validate=validate.OneOf(OFFSET_RESETS), **default("earliest")),
        "security": SecuritySettings(
            keys=fields.String(),
            allow_none=True,
            metadata={
                "description": "allowlisted librdkafka security settings (schema/kafka_settings.py, "
                "docs/security.md). Secrets only as '${env:KCM_SECRET_...}' or '${file:/run/secrets/...}' "
                "references (KCM_SECRET_ENV_PREFIX, KCM_SECRETS_DIR)."
            },
            **default(None),
        ),
        "placement": Placement(
            allow_none=True,
            metadata={
                "description": "labels a supervisor must carry (KCM_SUPERVISOR_LABELS) to run this consumer: a map "
                "{\"zone\": \"a\"} or a list [\"zone=a\"] (at most 16; stored as the map); none: any supervisor "
                "(docs/runtime.md, Several supervisors)",
                "oneOf": [{"type": "object", "additionalProperties": {"type": "string"}},
                          {"type": "array", "items": {"type": "string"}}],
            },
            **default(None),
        ),
        "downstream_processors": fields.List(
            fields.Nested(ProcessorIn),
            validate=validate.Length(max=MAX_PROCESSORS),
            metadata={"description": "Processors in pipeline order; on PATCH the list is replaced"},
            **default(list),
        ),
    }


class ConsumerIn(RejectReadOnly.from_dict(_fields(creating=True), name="ConsumerInBase")):
    READ_ONLY = CONSUMER_READ_ONLY

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _one_broker_form(self, data, original, **kwargs):
        # report a missing form together with other field errors, but not for a field that failed on its own
        broker_fields = ("broker_ip", "broker_port", "bootstrap_servers")
        if not isinstance(original, dict) or any(n in original and n not in data for n in broker_fields):
            return
        check_broker_form(data.get("broker_ip"), data.get("broker_port"), data.get("bootstrap_servers"))


class ConsumerPatch(RejectReadOnly.from_dict(_fields(creating=False), name="ConsumerPatchBase")):
    """Every field optional; the broker form is checked on the merged result in the service layer."""

    READ_ONLY = CONSUMER_READ_ONLY


class ConsumerOut(Schema):
    id = fields.UUID(required=True)
    name = fields.String(allow_none=True)
    broker_ip = fields.String(allow_none=True)
    broker_port = fields.Integer(allow_none=True)
    bootstrap_servers = fields.List(fields.String(), allow_none=True)
    topic = fields.String(required=True)
    consumer_group = fields.String(required=True)
    client_id = fields.String(allow_none=True)
    replicas = fields.Integer(required=True)
    auto_offset_reset = fields.String(required=True)
    security = fields.Dict(allow_none=True, metadata={"description": "Secrets appear only as references"})
    placement = fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True,
                            metadata={"description": "supervisor labels required to run it; null: any"})
    downstream_processors = fields.List(fields.Nested(ProcessorOut), required=True)
    status = fields.Enum(ConsumerStatus, by_value=True, required=True)
    desired_state = fields.Enum(DesiredState, by_value=True, required=True)
    generation = fields.Integer(required=True)
    created_at = UTCDateTime(required=True)
    updated_at = UTCDateTime(required=True)


class ConsumerQuery(Schema):
    name = fields.String(validate=validate_consumer_name, metadata=NAME_METADATA)
    status = fields.Enum(ConsumerStatus, by_value=True, metadata={"description": "ACTIVE | INACTIVE | ERROR"})
    desired_state = fields.Enum(DesiredState, by_value=True)
    topic = fields.String(validate=validate.Length(min=1, max=249))
    consumer_group = fields.String(validate=validate.Length(min=1, max=255))


class ControlOut(Schema):
    id = fields.UUID(required=True)
    message = fields.String(required=True)
    action = fields.String(required=True)
    desired_state = fields.Enum(DesiredState, by_value=True, required=True)
    generation = fields.Integer(required=True)


class CreateQuery(Schema):
    validate = fields.Boolean(load_default=False, metadata={
        "description": "true: run the checks of POST /consumers/validate/ first and refuse (422) if one fails"})


class ValidationCheckOut(Schema):
    name = fields.String(required=True)
    ok = fields.Boolean(required=True)
    detail = fields.String(required=True, metadata={"description": "For a person; never holds a secret"})


class ValidateOut(Schema):
    valid = fields.Boolean(required=True, metadata={"description": "true when every check passed"})
    checks = fields.List(fields.Nested(ValidationCheckOut), required=True)
