"""Wake-up commands for the supervisor, appended to a capped Redis Stream after each committed change.

A Stream, not pub/sub: an entry appended while no supervisor is listening stays readable (XREAD from the
last id the supervisor saw), whereas a pub/sub message with no subscriber is dropped. PostgreSQL stays the
source of truth either way; the supervisor's periodic reconcile catches anything a lost command missed.

A pause or resume also reaches the consumer's live workers, which never read the database: ``announce_pause``
writes the pause key and publishes it on the channel of the same name (workers/control.py follows both).
"""
from __future__ import annotations

import json
import logging
import time

import redis

from schema import keys
from schema.states import CommandAction

log = logging.getLogger("kcm.api.commands")


class CommandPublisher:
    def __init__(self, client: redis.Redis):
        self.client = client

    def publish(self, consumer_id: object, generation: int, action: CommandAction) -> str | None:
        """Append one command; return its stream id, or None when Redis is down (the call still succeeded)."""
        fields = {
            "consumer_id": str(consumer_id),
            "generation": str(int(generation)),
            "action": CommandAction(action).value,
            "ts": f"{time.time():.6f}",
        }
        try:
            entry_id = self.client.xadd(
                keys.COMMAND_STREAM, fields, maxlen=keys.COMMAND_STREAM_MAXLEN, approximate=True
            )
        except redis.RedisError as exc:
            # redis-py's messages name host:port only, never the password of the URL
            log.warning(
                "command not published (the supervisor's reconcile will pick the change up): "
                "consumer_id=%s generation=%s action=%s error=%s: %s",
                fields["consumer_id"], fields["generation"], fields["action"], type(exc).__name__, exc,
            )
            return None
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    def announce_pause(self, consumer_id: object, generation: int, paused: bool) -> None:
        """SET the consumer's pause key (with its generation: a later generation's workers take the pause from
        their spec instead) and PUBLISH it, in one transaction. Raises ``redis.RedisError``: a pause the live
        workers cannot learn of is refused, not reported done."""
        key = keys.pause_key(consumer_id)
        value = json.dumps({"paused": bool(paused), "generation": int(generation)}, separators=(",", ":"))
        pipe = self.client.pipeline(transaction=True)
        pipe.set(key, value, ex=keys.PAUSE_TTL)
        pipe.publish(key, value)
        pipe.execute()
