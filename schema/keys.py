"""Every Redis key and stream name kcm uses. Nothing outside this module formats a key.

Layout (see docs/redis-keys.md for redis-cli recipes):

  kcm:commands                                   stream   API -> supervisor wake-ups (XADD, capped)
  kcm:supervisors                                set      index of supervisor ids (clean against the hashes)
  kcm:supervisor:{supervisor_id}                 hash     supervisor heartbeat, TTL          (writer: supervisor)
  kcm:consumer:{consumer_id}:replica:{n}:state   hash     replica state machine              (writer: supervisor)
  kcm:consumer:{consumer_id}:replica:{n}:heartbeat  hash  worker heartbeat + counters, TTL   (writer: worker)
  kcm:consumer:{consumer_id}:replica:{n}:lease   string   "pid@host" lease, TTL              (writer: worker)
  kcm:consumer:{consumer_id}:dead-letters        zset     dead-letter job ids by time        (writers: worker adds,
                                                          the rq job removes itself once delivered, API deletes)
  rq:queue:kcm-dead-letters                      rq       the dead-letter retry queue        (writer: rq)
"""
from __future__ import annotations

PREFIX = "kcm"

COMMAND_STREAM = f"{PREFIX}:commands"
COMMAND_STREAM_MAXLEN = 10_000
SUPERVISORS_INDEX = f"{PREFIX}:supervisors"
DEAD_LETTER_QUEUE = "kcm-dead-letters"  # an rq queue name; rq stores it as rq:queue:kcm-dead-letters


def supervisor_key(supervisor_id: str) -> str:
    return f"{PREFIX}:supervisor:{supervisor_id}"


def _replica(consumer_id: object, replica: int) -> str:
    return f"{PREFIX}:consumer:{consumer_id}:replica:{int(replica)}"


def replica_state_key(consumer_id: object, replica: int) -> str:
    return f"{_replica(consumer_id, replica)}:state"


def heartbeat_key(consumer_id: object, replica: int) -> str:
    return f"{_replica(consumer_id, replica)}:heartbeat"


def lease_key(consumer_id: object, replica: int) -> str:
    return f"{_replica(consumer_id, replica)}:lease"


def replica_pattern(consumer_id: object) -> str:
    """A SCAN pattern for every key of one consumer's replicas (used to clean up after delete)."""
    return f"{PREFIX}:consumer:{consumer_id}:replica:*"


REPLICA_STATES_PATTERN = f"{PREFIX}:consumer:*:replica:*:state"  # SCAN: every replica state hash


def parse_replica_state_key(key: str) -> tuple[str, int] | None:
    """``(consumer_id, replica)`` of a ``replica_state_key``, or None for any other key."""
    parts = key.split(":")
    if len(parts) != 6 or parts[0] != PREFIX or parts[1] != "consumer" or parts[3] != "replica" \
            or parts[5] != "state" or not parts[4].isdigit():
        return None
    return parts[2], int(parts[4])


def dead_letter_index(consumer_id: object) -> str:
    return f"{PREFIX}:consumer:{consumer_id}:dead-letters"
