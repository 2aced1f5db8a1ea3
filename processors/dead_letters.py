"""Dead letters as rq jobs: each job re-delivers one message to one processor with rq's ``Retry`` schedule.

A dead letter is enqueued on ``schema.keys.DEAD_LETTER_QUEUE`` and indexed by time in
``schema.keys.dead_letter_index(consumer_id)`` (one Redis transaction for both). The job holds the processor's
type/id/config (configs hold secret *references* only) and the message, base64, capped at
``KCM_DEAD_LETTER_MAX_BYTES``: a larger message is refused with a FatalError, so its offset never advances
and the consumer stops loudly instead of losing it. When rq's retries are exhausted the job stays in rq's
failed registry, where the API lists and replays it.
"""
from __future__ import annotations

import base64
import logging
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

from rq import Queue, Retry

from processors.base import FatalError, Record
from schema import keys

log = logging.getLogger(__name__)

# rq keeps a failed job this long; the dead letter stays listable and replayable meanwhile
FAILED_TTL_SECONDS = 30 * 24 * 3600
JOB_TIMEOUT_SECONDS = 300


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def payload_size(message) -> int:
    return (len(message.value() or b"") + len(message.key() or b"")
            + sum(len(k) + len(v or b"") for k, v in (message.headers() or ())))


def dead_letter_id(consumer_id: str, processor_id: str, topic: str, partition: int, offset: int) -> str:
    """Deterministic, so dead-lettering the same message again after a crash replaces rather than doubles."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"kcm:{consumer_id}/{processor_id}/{topic}/{partition}/{offset}").hex


class DeadLetterQueue:
    def __init__(self, redis, settings, consumer_id: str):
        if settings is None:
            from schema.settings import Settings

            settings = Settings.from_env()
        self.redis = redis
        self.max_bytes = settings.dead_letter_max_bytes
        self.consumer_id = str(consumer_id)
        self.queue = Queue(keys.DEAD_LETTER_QUEUE, connection=redis)

    def send(self, spec, policy, message, error: Exception, attempts: int) -> str:
        size = payload_size(message)
        where = f"{message.topic()}/{message.partition()}@{message.offset()}"
        if size > self.max_bytes:
            raise FatalError(
                f"dead letter refused: message {where} is {size} bytes, over KCM_DEAD_LETTER_MAX_BYTES="
                f"{self.max_bytes}; its offset is not advanced (raise the cap or fix processor {spec.id})")
        now = time.time()
        context = {
            "consumer_id": self.consumer_id, "processor_id": spec.id, "processor_type": spec.processor_type,
            "topic": message.topic(), "partition": message.partition(), "offset": message.offset(),
            "error_class": f"{type(error).__module__}.{type(error).__qualname__}",
            "error_message": str(error)[:2000], "attempts": attempts,
            "failed_at": datetime.fromtimestamp(now, UTC).isoformat(), "payload_bytes": size,
        }
        envelope = {
            "consumer_id": self.consumer_id,
            "processor": {"id": spec.id, "type": spec.processor_type, "config": dict(spec.config)},
            "message": {
                "topic": message.topic(), "partition": message.partition(), "offset": message.offset(),
                "key": _b64(message.key()), "value": _b64(message.value()),
                "headers": [[k, _b64(v)] for k, v in (message.headers() or ())] or None,
                "timestamp": list(message.timestamp()),
            },
        }
        job_id = dead_letter_id(self.consumer_id, spec.id, message.topic(), message.partition(),
                                message.offset())
        intervals = list(policy.dead_letter_retry_intervals) or 0
        with self.redis.pipeline() as pipe:
            self.queue.enqueue_call(
                redeliver, args=(envelope,), job_id=job_id, meta={"dead_letter": context},
                description=f"dead letter {where} for processor {spec.id} ({spec.processor_type})",
                retry=Retry(max=policy.dead_letter_max_retries, interval=intervals) if policy.dead_letter_max_retries else None,
                timeout=JOB_TIMEOUT_SECONDS, failure_ttl=FAILED_TTL_SECONDS, pipeline=pipe,
            )
            pipe.zadd(keys.dead_letter_index(self.consumer_id), {job_id: now})
            pipe.execute()
        return job_id


def record_from_envelope(envelope: dict) -> Record:
    m = envelope["message"]
    headers = m.get("headers")
    return Record(
        topic_=m["topic"], partition_=m["partition"], offset_=m["offset"], value_=_unb64(m.get("value")),
        key_=_unb64(m.get("key")),
        headers_=tuple((k, _unb64(v)) for k, v in headers) if headers is not None else None,
        timestamp_=tuple(m.get("timestamp") or (0, 0)),
    )


def redeliver(envelope: dict) -> str:
    """The rq job: deliver one dead-lettered message to its processor; raising lets rq retry it."""
    from rq import get_current_job

    from processors import registry
    from schema.settings import Settings

    job = get_current_job()
    redis = job.connection if job else None
    proc = envelope["processor"]
    processor_cls = registry.load(proc["type"])
    config = processor_cls.validate_config(proc["config"])
    context = SimpleNamespace(redis=redis, settings=Settings.from_env(), spec=None, replica=None,
                              dead_letter_replay=True)
    processor = processor_cls(config, consumer_id=envelope["consumer_id"], processor_id=proc["id"],
                              context=context)
    record = record_from_envelope(envelope)
    processor.open()
    try:
        processor.process([record])
        processor.flush()
    finally:
        processor.close()
    if job is not None and redis is not None:
        redis.zrem(keys.dead_letter_index(envelope["consumer_id"]), job.id)
    where = f"{record.topic()}/{record.partition()}@{record.offset()}"
    log.info("dead letter %s delivered to processor %s", where, proc["id"])
    return f"delivered {where}"
