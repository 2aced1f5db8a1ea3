"""The roles, each including the one before: viewer (every read) < operator (start, stop, restart, dead-letter
replay and discard) < admin (create, change and delete consumers and processors; API keys; the audit trail).

Standard library only. Every check compares with ``>=`` here; nothing else orders roles."""
from __future__ import annotations

import enum


class Role(enum.IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def names(cls) -> list[str]:
        return [role.label for role in cls]

    @classmethod
    def parse(cls, value: object) -> Role | None:
        """The role a name stands for (case-insensitive), or None for anything else."""
        if isinstance(value, str):
            return cls.__members__.get(value.strip().upper())
        return None

    @classmethod
    def highest(cls, values: object) -> Role | None:
        """The highest role named in a claim (one name or a list of names); unknown names are ignored."""
        items = [values] if isinstance(values, str) else values if isinstance(values, (list, tuple)) else []
        found = [role for role in map(cls.parse, items) if role is not None]
        return max(found) if found else None
