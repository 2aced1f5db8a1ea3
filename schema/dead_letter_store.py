"""The rq-backed dead-letter store: read, replay, delete and purge a consumer's dead letters.

Shared vocabulary because two sides act on dead letters: the API (list, replay, delete, purge at DELETE) and the
supervisor (purge once a deleted consumer's last worker is gone). It imports rq and ``schema`` only.

The index ``dead_letter_index(consumer_id)`` is only an index: every read checks the rq job still exists and
drops ids whose job expired (rq's failed TTL) from the index. Each dead letter's ``job.meta["dead_letter"]``
holds its error context and its ``history``: entries made by ``history_entry``, wherever they are written.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from schema import keys

# a job still waiting (queued, running, retry scheduled) needs no replay: it is being delivered already
PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED}
REPLAY_REQUESTED = "replay_requested"


def history_entry(event: str, detail: str, at: float | None = None) -> dict[str, str]:
    """One entry of ``job.meta["dead_letter"]["history"]``: ``{"at": ISO-8601 UTC, "event", "detail"}``."""
    when = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return {"at": when.isoformat(), "event": event, "detail": detail}


def append_history(job: Job, event: str, detail: str) -> None:
    """Add an entry to the job's stored meta. Read-modify-write under WATCH: the API and the running job both
    append, and neither may lose the other's entry (rq's own saves leave meta alone)."""
    entry = history_entry(event, detail)

    def append(pipe) -> None:
        raw = pipe.hget(job.key, "meta")
        meta = job.serializer.loads(raw) if raw else {}
        meta.setdefault("dead_letter", {}).setdefault("history", []).append(entry)
        pipe.multi()
        pipe.hset(job.key, "meta", job.serializer.dumps(meta))
        job.meta = meta

    job.connection.transaction(append, job.key)


@dataclass
class DeadLetter:
    id: str
    status: str
    context: dict
    indexed_at: float

    @property
    def processor_id(self) -> str | None:
        return self.context.get("processor_id")

    def as_dict(self) -> dict:
        return {"id": self.id, "status": self.status, "indexed_at": self.indexed_at, "history": [],
                **self.context}


class DeadLetterStore:
    def __init__(self, client: redis.Redis):
        self.redis = client  # rq stores pickled bytes: a client without decode_responses
        self.queue = Queue(keys.DEAD_LETTER_QUEUE, connection=client)

    def page(self, consumer_id, first_item: int, page_size: int) -> tuple[list[DeadLetter], int]:
        """Newest first; the total counts the index after expired jobs were dropped from it."""
        index = keys.dead_letter_index(consumer_id)
        entries = self.redis.zrevrange(index, first_item, first_item + page_size - 1, withscores=True)
        return self._letters(index, entries), self.redis.zcard(index)

    def all(self, consumer_id) -> list[DeadLetter]:
        index = keys.dead_letter_index(consumer_id)
        return self._letters(index, self.redis.zrange(index, 0, -1, withscores=True))

    def get(self, consumer_id, dl_id: str) -> DeadLetter | None:
        job = self._job(consumer_id, dl_id)
        if job is None:
            return None
        return self._letter(job, self.redis.zscore(keys.dead_letter_index(consumer_id), dl_id))

    def replay(self, consumer_id, dl_id: str, requested_by: str) -> DeadLetter | None:
        """Deliver again now: a failed job is requeued, a job waiting for its retry interval runs at once.

        The history entry is saved before the job is queued, so the job's own entries come after it."""
        job = self._job(consumer_id, dl_id)
        if job is None:
            return None
        status = job.get_status(refresh=True)
        if status in PENDING:
            append_history(job, REPLAY_REQUESTED, f"{requested_by}; already {status.value}: nothing to requeue")
        elif status == JobStatus.SCHEDULED:
            append_history(job, REPLAY_REQUESTED, f"{requested_by}; the scheduled retry runs now")
            ScheduledJobRegistry(queue=self.queue).remove(job)
            self.queue.enqueue_job(job)
        elif status == JobStatus.FAILED:
            append_history(job, REPLAY_REQUESTED, f"{requested_by}; the failed job is queued again")
            FailedJobRegistry(queue=self.queue).requeue(job)
        else:  # finished, stopped or canceled: put it back on the queue
            append_history(job, REPLAY_REQUESTED, f"{requested_by}; the {status.value if status else 'unknown'} "
                                                  "job is queued again")
            self.queue.enqueue_job(job)
        return self.get(consumer_id, dl_id)

    def delete(self, consumer_id, dl_id: str) -> bool:
        job = self._job(consumer_id, dl_id)
        self.redis.zrem(keys.dead_letter_index(consumer_id), dl_id)
        if job is None:
            return False
        job.delete()
        return True

    def purge(self, consumer_id) -> int:
        """Delete every dead letter of a consumer that no longer exists (its jobs had nowhere left to go)."""
        index = keys.dead_letter_index(consumer_id)
        ids = [raw.decode() for raw in self.redis.zrange(index, 0, -1)]
        jobs = [job for job in Job.fetch_many(ids, connection=self.redis) if job is not None] if ids else []
        for job in jobs:
            job.delete()  # also takes it off the queue and out of rq's scheduled/failed registries
        self.redis.delete(index)
        return len(jobs)

    def purge_logged(self, consumer_id, log: logging.Logger, reason: str) -> None:
        """``purge``, best effort: a Redis that is down leaves the dead letters in rq, and says so."""
        try:
            count = self.purge(consumer_id)
        except redis.RedisError as exc:
            log.warning("DeadLetterPurgeFailed consumer=%s: %s; its dead letters stay in rq", consumer_id,
                        type(exc).__name__)
            return
        if count:
            log.info("DeadLettersPurged consumer=%s count=%s reason=%s", consumer_id, count, reason)

    def close(self) -> None:
        self.redis.close()

    def _letters(self, index: str, entries: list) -> list[DeadLetter]:
        ids = [raw.decode() for raw, _score in entries]
        jobs = Job.fetch_many(ids, connection=self.redis) if ids else []
        expired = [job_id for job_id, job in zip(ids, jobs, strict=True) if job is None]
        if expired:
            self.redis.zrem(index, *expired)
        return [self._letter(job, score) for job, (_raw, score) in zip(jobs, entries, strict=True) if job is not None]

    def _job(self, consumer_id, dl_id: str) -> Job | None:
        index = keys.dead_letter_index(consumer_id)
        if self.redis.zscore(index, dl_id) is None:
            return None  # not this consumer's dead letter
        job = Job.fetch_many([dl_id], connection=self.redis)[0]
        if job is None:
            self.redis.zrem(index, dl_id)
        return job

    @staticmethod
    def _letter(job: Job, score) -> DeadLetter:
        status = job.get_status(refresh=False)
        return DeadLetter(id=job.id, status=status.value if status else "unknown",
                          context=dict(job.meta.get("dead_letter", {})), indexed_at=float(score or 0))
