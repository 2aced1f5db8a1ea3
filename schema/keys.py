"""Every Redis key and stream name kcm uses. Nothing outside this module formats a key (rq names its own).

Layout and writers (docs/redis-keys.md has redis-cli recipes). Every kcm key has one writer, except the dead
letters, which several parties act on by job id (ZADD/ZREM/DEL of one id are safe to interleave):

  kcm:commands                                      stream  wake-ups, XADD, capped   (writer: API)
  kcm:supervisors                                   set     supervisor ids, an index (writer: supervisor)
  kcm:supervisor:{supervisor_id}                    hash    heartbeat, TTL           (writer: supervisor)
  kcm:consumer:{consumer_id}:replica:{n}:state      hash    replica state machine    (writer: supervisor)
  kcm:consumer:{consumer_id}:replica:{n}:heartbeat  hash    heartbeat, counters, TTL (writer: worker)
  kcm:consumer:{consumer_id}:replica:{n}:lease      string  "pid@host" lease, TTL    (writer: worker)
  kcm:consumer:{consumer_id}:replica:{n}:errors     list    JSON: the replica's last errors, newest first,
      capped (LTRIM), TTL (writer: worker; schema/worker_metrics.py has the item)
  kcm:consumer:{consumer_id}:dead-letters           zset    dead-letter job ids by time. Writers: the worker
      adds; the rq job removes its own id once delivered; the API removes an id it deletes or finds expired,
      and the whole set when the consumer is deleted; the supervisor removes the set once a deleted
      consumer's last worker is gone (the API and the supervisor through schema/dead_letter_store.py)
  rq:queue:kcm-dead-letters, rq:job:{id}            rq      the dead-letter queue and jobs. Writers: the
      worker enqueues; rq runs, retries and expires; the job appends to its history; the API appends
      replay_requested, requeues and deletes; the supervisor deletes a deleted consumer's jobs
  kcm:lag-monitor                                   hash    the lag monitor's heartbeat, TTL (writer: lag monitor)
  kcm:consumer:{consumer_id}:lag                    string  JSON: the latest lag sample, TTL (writer: lag monitor)
  kcm:consumer:{consumer_id}:lag:window             list    JSON samples, newest first, capped (LTRIM), TTL
      (writer: lag monitor; the health verdict's sliding window)
  kcm:consumer:{consumer_id}:lag:history            list    JSON points {"at", "lag", "rate"}, newest first, the
      last LAG_HISTORY_SECONDS (LTRIM), TTL (writer: lag monitor; the dashboard's lag chart)
  kcm:consumer:{consumer_id}:health                 string  JSON: verdict, reason, since, TTL (writer: lag monitor)
  kcm:consumer:{consumer_id}:throughput             string  JSON: messages and bytes per second over the last
      minute, from the heartbeats' counters, TTL (writer: lag monitor)
  kcm:consumer:{consumer_id}:alerted                string  JSON: the verdict and FATAL replicas last notified to
      KCM_ALERT_WEBHOOK_URL, so an alert is sent once, TTL (writer: lag monitor)
  kcm:consumer:{consumer_id}:pause                  string  JSON: {"paused", "generation"}: the desired pause of the
      consumer's live workers, TTL; a PUBLISH on the channel of the same name follows each write (writer: API)
  rq:queue:kcm-alerts, rq:job:{id}                  rq      webhook alerts. Writers: the lag monitor enqueues (in
      the transaction that updates :alerted); rq runs and retries them (the deadletters rq worker)
  kcm:redis-sink:offsets:{stream}                   hash    in a redis_sink's TARGET Redis: the last offset written
      to {stream} per consumer:processor:topic:partition, updated by the script that appends (writer: worker)
"""
from __future__ import annotations

PREFIX = "kcm"

COMMAND_STREAM = f"{PREFIX}:commands"
COMMAND_STREAM_MAXLEN = 10_000
SUPERVISORS_INDEX = f"{PREFIX}:supervisors"
DEAD_LETTER_QUEUE = "kcm-dead-letters"  # an rq queue name; rq stores it as rq:queue:kcm-dead-letters
ALERT_QUEUE = "kcm-alerts"  # an rq queue name: webhook alerts (supervisor/lag/webhook.py)


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


REPLICA_ERRORS_MAX = 20  # items kept per replica (LTRIM)
REPLICA_ERRORS_TTL = 86_400  # seconds after the last error: a dead replica's errors stay readable for a day


def replica_errors_key(consumer_id: object, replica: int) -> str:
    return f"{_replica(consumer_id, replica)}:errors"


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


# --- the lag monitor (supervisor/lag/, docs/monitoring.md); every key expires, so a dead monitor leaves no stale lag
LAG_MONITOR_KEY = f"{PREFIX}:lag-monitor"


def lag_key(consumer_id: object) -> str:
    return f"{PREFIX}:consumer:{consumer_id}:lag"


def lag_window_key(consumer_id: object) -> str:
    return f"{PREFIX}:consumer:{consumer_id}:lag:window"


LAG_HISTORY_SECONDS = 15 * 60  # what the lag history keeps: the dashboard's lag chart span


def lag_history_key(consumer_id: object) -> str:
    return f"{PREFIX}:consumer:{consumer_id}:lag:history"


def health_key(consumer_id: object) -> str:
    return f"{PREFIX}:consumer:{consumer_id}:health"


def throughput_key(consumer_id: object) -> str:
    return f"{PREFIX}:consumer:{consumer_id}:throughput"


def alerted_key(consumer_id: object) -> str:
    return f"{PREFIX}:consumer:{consumer_id}:alerted"


# --- pause and resume (api/services/commands.py writes, workers/control.py reads; docs/redis-keys.md)
PAUSE_TTL = 86_400  # seconds: a new worker takes the pause from its spec, the key only has to reach live ones


def pause_key(consumer_id: object) -> str:
    """The consumer's desired pause; also the name of the pub/sub channel that announces each write."""
    return f"{PREFIX}:consumer:{consumer_id}:pause"


# --- redis_sink (processors/redis_sink.py): a key of the sink's *target* Redis, next to the stream it writes
def redis_sink_offsets_key(stream: bytes) -> bytes:
    """The hash of the last offset appended to ``stream`` (a rendered, binary-safe stream name) per field
    ``redis_sink_offset_field``: a redelivered batch finds its entries there and is skipped."""
    return f"{PREFIX}:redis-sink:offsets:".encode() + stream


def redis_sink_offset_field(consumer_id: object, processor_id: object, topic: str, partition: int) -> str:
    return f"{consumer_id}:{processor_id}:{topic}:{int(partition)}"
