"""Name rules every caller shares: consumer names, Kafka topic names, broker addresses, and the tables a sink may
not target.

Standard library only at import time, so the API schemas and the processors can both use it. The callers wrap
``InvalidName`` in their own error type (a marshmallow ``ValidationError`` at the API), never re-implement it.
"""
from __future__ import annotations

import ipaddress
import re

# a consumer's optional name: a slug that can stand for its id in every /consumers/{id}/... path (api/converters.py)
CONSUMER_NAME_PATTERN = r"[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?"
CONSUMER_NAME_RE = re.compile(CONSUMER_NAME_PATTERN)
UUID_PATTERN = r"[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}"
UUID_RE = re.compile(UUID_PATTERN)
# static path segments under /consumers/ that a name would shadow
RESERVED_CONSUMER_NAMES = frozenset({"validate"})
CONSUMER_NAME_MESSAGE = (
    "Invalid consumer name: use 1-100 characters from [a-z0-9-], starting and ending with a letter or digit; "
    f"not a UUID, not {', '.join(sorted(RESERVED_CONSUMER_NAMES))}."
)
TOPIC_RE = re.compile(r"[a-zA-Z0-9._-]{1,249}")
TOPIC_MESSAGE = "Invalid Kafka topic name: use 1-249 characters from [a-zA-Z0-9._-], not '.' or '..'."
HOST_PORT_MESSAGE = "Expected 'host:port' with a valid hostname or IP and a port in 1-65535."
MAX_BOOTSTRAP_SERVERS = 100
BOOTSTRAP_MESSAGE = (f"Expected 1-{MAX_BOOTSTRAP_SERVERS} 'host:port' entries, as a list or as one comma-separated "
                     "string.")
_HOST_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")

# the sink table database_sync writes when its config names none (kcm_* otherwise belongs to kcm)
DEFAULT_SINK_TABLE = "kcm_messages"
KCM_TABLE_PREFIX = "kcm_"
KCM_FIXED_TABLES = frozenset({"consumers", "downstream_processors", "alembic_version"})
PROTECTED_TABLE_MESSAGE = (
    "kcm's own tables cannot be a sink target: consumers, downstream_processors, alembic_version, every kcm_* "
    f"table except {DEFAULT_SINK_TABLE}, and every table of schema.models, in any schema or spelling."
)


class InvalidName(ValueError):
    """A name that breaks one of the rules here; the message is safe to show (it never repeats the value)."""


class InvalidEntries(InvalidName):
    """Some entries of a list break a rule: ``entries`` maps each one's index to its message, ``valid`` holds
    the others."""

    def __init__(self, entries: dict[int, str], valid: list):
        super().__init__("; ".join(f"entry {index}: {message}" for index, message in entries.items()))
        self.entries = entries
        self.valid = valid


def is_consumer_name(value: object) -> bool:
    """A slug that cannot be mistaken for an id (a UUID is a valid slug) or a static path segment."""
    return (isinstance(value, str) and CONSUMER_NAME_RE.fullmatch(value) is not None
            and UUID_RE.fullmatch(value) is None and value not in RESERVED_CONSUMER_NAMES)


def check_consumer_name(value: object) -> str:
    if not is_consumer_name(value):
        raise InvalidName(CONSUMER_NAME_MESSAGE)
    return value


def is_topic(value: object) -> bool:
    return isinstance(value, str) and value not in (".", "..") and TOPIC_RE.fullmatch(value) is not None


def check_topic(value: object) -> str:
    if not is_topic(value):
        raise InvalidName(TOPIC_MESSAGE)
    return value


def is_host(value: str) -> bool:
    """A DNS hostname (RFC 1123) or an IPv4/IPv6 address."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    if not value or len(value) > 253:
        return False
    labels = value.rstrip(".").split(".")
    if all(label.isdigit() for label in labels):
        return False  # looks like an IPv4 address but ip_address() refused it
    return all(_HOST_LABEL_RE.fullmatch(label) for label in labels)


def is_host_port(value: object) -> bool:
    """``host:port`` with an IPv6 host in brackets (``[::1]:9092``)."""
    if not isinstance(value, str):
        return False
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep or ":" not in host:
            return False
    else:
        host, sep, port = value.rpartition(":")
        if not sep or ":" in host:
            return False
    return port.isdigit() and 1 <= int(port) <= 65535 and is_host(host)


def check_host_port(value: object) -> str:
    if not is_host_port(value):
        raise InvalidName(HOST_PORT_MESSAGE)
    return value


def bootstrap_servers(value: object) -> list[str]:
    """A cluster's brokers, given as ``["h1:9092", "h2:9092"]`` or as ``"h1:9092,h2:9092"``, as the list.

    Raises ``InvalidEntries`` naming each bad entry by index, or ``InvalidName`` for the list as a whole."""
    if isinstance(value, str):
        servers = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        servers = list(value)
    else:
        raise InvalidName(BOOTSTRAP_MESSAGE)
    if not 1 <= len(servers) <= MAX_BOOTSTRAP_SERVERS:
        raise InvalidName(BOOTSTRAP_MESSAGE)
    bad = {index: HOST_PORT_MESSAGE for index, server in enumerate(servers) if not is_host_port(server)}
    if bad:
        raise InvalidEntries(bad, [server for index, server in enumerate(servers) if index not in bad])
    return servers


def protected_table(name: str) -> bool:
    """True when ``name`` (``[schema.]table``, any case, quoted or not) is one of kcm's own tables."""
    bare = name.strip().rsplit(".", 1)[-1].strip().strip('"`[]').lower()
    if bare == DEFAULT_SINK_TABLE:
        return False
    return bare in KCM_FIXED_TABLES or bare.startswith(KCM_TABLE_PREFIX) or bare in _model_tables()


def _model_tables() -> frozenset[str]:
    # imported here, not at the top: the tables a later migration adds are protected without editing this list
    from schema.models import Base

    return frozenset(table.name.lower() for table in Base.metadata.tables.values())
