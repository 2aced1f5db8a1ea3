"""Dead letters as rq jobs: each job re-delivers one message to one processor with rq's ``Retry`` schedule.

A dead letter is enqueued on ``schema.keys.DEAD_LETTER_QUEUE`` and indexed by time in
``schema.keys.dead_letter_index(consumer_id)`` (one Redis transaction for both). The job carries the message
(base64, capped at ``KCM_DEAD_LETTER_MAX_BYTES``: a larger message is refused with a FatalError, so its offset
never advances and the consumer stops loudly instead of losing it), the processor's id and type, and the
pipeline's ``ProcessorContext.as_envelope()`` (consumer id, the consumer's cluster and security *references*,
topic; never a resolved secret). When rq's retries are exhausted the job stays in rq's failed registry, where
the API lists and replays it.

A replay uses the processor's **current** configuration (fixing it is the usual reason to replay): the job
reads the processor row and its consumer from kcm's database (the rq worker's ``KCM_DATABASE_URL``) and
records each outcome in ``job.meta["dead_letter"]["history"]`` (``schema.dead_letter_store.history_entry``).

A dead letter of a sink goes to that sink only (after steps it holds the message as transformed). A dead letter
of a step (``processors.base.BaseStep``) holds the message before the step, so it goes through the step and the
processors after it in the consumer's current order (``processors.pipeline.replay_through``); a step that drops
it on replay (a filter whose fixed condition no longer matches) counts as replayed, and the history says so.
"""
from __future__ import annotations

import base64
import functools
import logging
import time
import uuid
from datetime import UTC, datetime

from rq import Queue, Retry

from processors.base import BaseStep, FatalError, Record, RetriableError
from processors.context import ProcessorContext
from schema import keys
from schema.dead_letter_store import append_history, history_entry

log = logging.getLogger(__name__)

# rq keeps a failed job this long; the dead letter stays listable and replayable meanwhile
FAILED_TTL_SECONDS = 30 * 24 * 3600
JOB_TIMEOUT_SECONDS = 300
DEAD_LETTERED, DELIVERED, DELIVERY_FAILED = "dead_lettered", "delivered", "delivery_failed"


class ProcessorGone(FatalError):
    """The dead letter's processor was deleted (or belongs to another consumer now): nothing to deliver to."""


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
    def __init__(self, context: ProcessorContext):
        self.context = context
        self.redis = context.redis
        self.max_bytes = context.settings.dead_letter_max_bytes
        self.consumer_id = str(context.consumer_id)
        self.queue = Queue(keys.DEAD_LETTER_QUEUE, connection=self.redis)

    def send(self, spec, policy, message, error: Exception, attempts: int) -> str:
        size = payload_size(message)
        where = f"{message.topic()}/{message.partition()}@{message.offset()}"
        if size > self.max_bytes:
            raise FatalError(
                f"dead letter refused: message {where} is {size} bytes, over KCM_DEAD_LETTER_MAX_BYTES="
                f"{self.max_bytes}; its offset is not advanced (raise the cap or fix processor {spec.id})")
        now = time.time()
        error_text = f"{type(error).__module__}.{type(error).__qualname__}"
        meta = {
            "consumer_id": self.consumer_id, "processor_id": spec.id, "processor_type": spec.processor_type,
            "topic": message.topic(), "partition": message.partition(), "offset": message.offset(),
            "error_class": error_text, "error_message": str(error)[:2000], "attempts": attempts,
            "failed_at": datetime.fromtimestamp(now, UTC).isoformat(), "payload_bytes": size,
            "history": [history_entry(DEAD_LETTERED, f"after {attempts} attempt(s): {type(error).__name__}: "
                                                     f"{str(error)[:500]}", at=now)],
        }
        envelope = {
            **self.context.as_envelope(),
            # the config at the time of failure, for reading only: a replay uses the processor's current one
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
        retry = Retry(max=policy.dead_letter_max_retries, interval=intervals) if policy.dead_letter_max_retries else None
        with self.redis.pipeline() as pipe:
            self.queue.enqueue_call(
                redeliver, args=(envelope,), job_id=job_id, meta={"dead_letter": meta},
                description=f"dead letter {where} for processor {spec.id} ({spec.processor_type})",
                retry=retry, timeout=JOB_TIMEOUT_SECONDS, failure_ttl=FAILED_TTL_SECONDS, pipeline=pipe,
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


@functools.lru_cache(maxsize=4)
def _sessions(database_url: str):
    """One engine per rq work process and database (a forked work horse builds its own)."""
    from schema.db import make_engine, make_session_factory

    return make_session_factory(make_engine(database_url))


def current_processor(database_url: str, envelope: dict):
    """``(ProcessorSpec, later ProcessorSpecs, updated_at, envelope with the consumer's current cluster)`` from kcm's
    database; the later specs are the processors after it in the consumer's current order (what a step feeds).

    Raises ``ProcessorGone`` when the processor row is missing or belongs to another consumer."""
    from schema.models import DownstreamProcessor
    from schema.spec import ProcessorSpec, bootstrap_servers_of

    proc, consumer_id = envelope["processor"], str(envelope["consumer_id"])
    gone = ProcessorGone(f"processor {proc['id']} ({proc['type']}) of consumer {consumer_id} no longer exists; "
                         "the dead letter cannot be delivered (delete it to give it up)")
    try:
        row_id = uuid.UUID(str(proc["id"]))
    except ValueError:
        raise gone from None
    with _sessions(database_url)() as session:
        row = session.get(DownstreamProcessor, row_id)
        if row is None or str(row.consumer_id) != consumer_id:
            raise gone
        consumer = row.consumer
        specs = [ProcessorSpec(id=str(p.id), processor_type=p.processor_type, config=dict(p.config or {}),
                               on_error=p.on_error) for p in consumer.downstream_processors]  # ordered by position
        index = next(n for n, p in enumerate(specs) if p.id == str(row.id))
        current = dict(envelope)
        if consumer.bootstrap_servers or consumer.broker_ip:
            current["bootstrap_servers"] = bootstrap_servers_of(consumer)
        if consumer.security is not None:
            current["security"] = dict(consumer.security)
        current["topic"] = consumer.topic or envelope.get("topic", "")
        return specs[index], tuple(specs[index + 1:]), row.updated_at, current


def redeliver(envelope: dict) -> str:
    """The rq job: deliver one dead-lettered message to its processor as configured now; raising lets rq retry."""
    from rq import get_current_job
    from sqlalchemy.exc import SQLAlchemyError

    from processors import registry
    from processors.pipeline import replay_through
    from schema.settings import Settings

    job = get_current_job()
    redis = job.connection if job else None
    settings = Settings.from_env()  # the rq worker's own: its KCM_DATABASE_URL is kcm's database
    record = record_from_envelope(envelope)
    where = f"{record.topic()}/{record.partition()}@{record.offset()}"
    try:
        spec, later, updated_at, current = current_processor(settings.database_url, envelope)
    except ProcessorGone as exc:
        _history(job, DELIVERY_FAILED, f"{exc}; not retried")
        if job is not None:
            job.retries_left = 0  # rq reads this when the job fails: no retry can bring the processor back
        raise
    except SQLAlchemyError as exc:
        _history(job, DELIVERY_FAILED, f"kcm's database is unreachable ({type(exc).__name__}); retried later")
        raise RetriableError(f"kcm's database is unreachable: {type(exc).__name__}") from exc
    configured = f"with the processor's current configuration (updated_at {_iso(updated_at)})"
    try:
        processor_cls = registry.load(spec.processor_type)
        context = ProcessorContext.for_replay(current, settings, redis)
        if issubclass(processor_cls, BaseStep):  # to the step alone it would go nowhere: through it and on
            configured = (f"through step {spec.id} ({spec.processor_type}) and the {len(later)} processor(s) after "
                          f"it, with their current configurations (the step's updated_at {_iso(updated_at)})")
            dropped_by = replay_through([spec, *later], record, context)
        else:
            dropped_by = None
            _deliver_to(processor_cls, spec, record, context)
    except Exception as exc:
        _history(job, DELIVERY_FAILED, f"{type(exc).__name__}: {str(exc)[:500]} ({configured})")
        raise
    if dropped_by is not None:
        configured = f"{configured}; dropped by step {dropped_by}, which counts as replayed"
    _history(job, DELIVERED, f"{where} {configured}")
    if job is not None and redis is not None:
        redis.zrem(keys.dead_letter_index(envelope["consumer_id"]), job.id)
    log.info("dead letter %s delivered to processor %s %s", where, spec.id, configured)
    return f"delivered {where}"


def _deliver_to(processor_cls, spec, record: Record, context: ProcessorContext) -> None:
    """A sink's dead letter: to that sink alone (after steps it holds the message as they transformed it)."""
    config = processor_cls.validate_config(spec.config)
    processor = processor_cls(config, consumer_id=context.consumer_id, processor_id=spec.id, context=context)
    processor.open()
    try:
        processor.process([record])
        processor.flush()
    finally:
        processor.close()


def _iso(when: datetime | None) -> str:
    if when is None:
        return "unknown"
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _history(job, event: str, detail: str) -> None:
    if job is None:
        return
    try:
        append_history(job, event, detail)
    except Exception as exc:  # the outcome matters more than its record: never mask it
        log.warning("dead letter %s: history not saved (%s: %s)", job.id, type(exc).__name__, exc)
