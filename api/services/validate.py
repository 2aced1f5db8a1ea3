"""``POST /consumers/validate/``: the checks of ``POST /consumers/`` that need the stored state, then connect.

Connects to what the consumer would use and reports each finding as a check: the cluster (its ``security``
resolved through schema/secrets.py and the allowlist of schema/kafka_settings.py, every host through the broker
address policy of schema/brokers.py, DNS answers included) answers within a timeout and has the topic; then
each processor's own ``check`` hook (processors/base.py). Creates nothing. A detail never holds a secret:
resolved values are redacted from third-party text, and a hook that raises is reported by its error's type.
"""
from __future__ import annotations

import logging
from dataclasses import asdict

from marshmallow.experimental.context import Context

from api.auth.current import current_actor
from api.auth.principal import Actor
from api.services.audit import Action
from processors import registry
from processors.checks import Check, probe_topic
from processors.context import ProcessorContext
from schema import kafka_settings, secrets
from schema.brokers import BrokerPolicy
from schema.secrets import Redactor, SecretPolicy
from schema.settings import Settings

log = logging.getLogger("kcm.api.validate")

VALIDATE_ACTION = Action.CONSUMER_VALIDATE
CLUSTER = "cluster"


def servers_of(data: dict) -> list[str]:
    """The consumer's brokers, from either form of the body."""
    if data.get("bootstrap_servers"):
        return list(data["bootstrap_servers"])
    return [f"{data['broker_ip']}:{data['broker_port']}"]


class ValidateService:
    def __init__(self, settings: Settings, consumers):
        self.settings = settings
        self.consumers = consumers

    def run(self, data: dict, actor: Actor | None = None) -> dict:
        """``{"valid": bool, "checks": [...]}``; a rule of create that fails is its own 4xx, as on create."""
        self.consumers.check_new(data, actor or current_actor())
        servers = servers_of(data)
        checks = self._cluster(data, servers)
        context = ProcessorContext(settings=self.settings, consumer_id="", bootstrap_servers=",".join(servers),
                                   security=data.get("security") or {}, topic=data["topic"])
        for index, spec in enumerate(data.get("downstream_processors") or []):
            checks.extend(self._processor(index, spec, context))
        return {"valid": all(check.ok for check in checks), "checks": [asdict(check) for check in checks]}

    def _cluster(self, data: dict, servers: list[str]) -> list[Check]:
        brokers = BrokerPolicy.of(self.settings)
        refused = brokers.check_resolved(servers)
        if refused:
            index, message = next(iter(refused.items()))
            return [Check(f"{CLUSTER} reachable", False, f"bootstrap server {index}: {message}")]
        redactor = Redactor()
        try:
            conf = kafka_settings.resolve(data.get("security"), SecretPolicy.of(self.settings), brokers,
                                          redactor=redactor)
        except (kafka_settings.SettingRefused, secrets.SecretError) as exc:
            return [Check(f"{CLUSTER} security", False, str(exc))]
        conf["bootstrap.servers"] = ",".join(servers)
        return probe_topic(conf, data["topic"], what=CLUSTER, redact=redactor)

    def _processor(self, index: int, spec: dict, context: ProcessorContext) -> list[Check]:
        processor_type = spec["processor_type"]
        prefix = f"processor {index} ({processor_type})"
        try:
            cls = registry.load(processor_type)
            with Context({"settings": self.settings}):
                config = cls.validate_config(spec.get("config") or {})
            found = cls.check(config, context)
        except Exception as exc:  # noqa: BLE001 - a plugin's bug is a failed check, not a 500
            log.warning("%s: its check raised %s", prefix, type(exc).__name__)
            return [Check(prefix, False, f"The processor's check failed with {type(exc).__name__}.")]
        return [Check(f"{prefix} {check.name}", check.ok, check.detail) for check in found]
