"""Reading and acting on a consumer's dead letters (the API's service layer for them).

The index ``dead_letter_index(consumer_id)`` is only an index: every read checks the rq job still exists and
drops ids whose job expired (rq's failed TTL) from the index.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from schema import keys

# a job still waiting (queued, running, retry scheduled) needs no replay: it is being delivered already
PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED}


@dataclass
class DeadLetter:
    id: str
    status: str
    context: dict
    indexed_at: float

    def as_dict(self) -> dict:
        return {"id": self.id, "status": self.status, "indexed_at": self.indexed_at, **self.context}


class DeadLetterStore:
    def __init__(self, redis):
        self.redis = redis  # rq needs a client without decode_responses
        self.queue = Queue(keys.DEAD_LETTER_QUEUE, connection=redis)

    def page(self, consumer_id, first_item: int, page_size: int) -> tuple[list[DeadLetter], int]:
        """Newest first."""
        index = keys.dead_letter_index(consumer_id)
        entries = self.redis.zrevrange(index, first_item, first_item + page_size - 1, withscores=True)
        ids = [raw.decode() for raw, _ in entries]
        jobs = Job.fetch_many(ids, connection=self.redis) if ids else []
        expired = [job_id for job_id, job in zip(ids, jobs, strict=True) if job is None]
        if expired:
            self.redis.zrem(index, *expired)
        items = [self._letter(job, score) for job, (_raw, score) in zip(jobs, entries, strict=True) if job is not None]
        return items, self.redis.zcard(index)

    def get(self, consumer_id, dl_id: str) -> DeadLetter | None:
        job = self._job(consumer_id, dl_id)
        if job is None:
            return None
        return self._letter(job, self.redis.zscore(keys.dead_letter_index(consumer_id), dl_id))

    def replay(self, consumer_id, dl_id: str) -> DeadLetter | None:
        """Deliver again now: a failed job is requeued, a job waiting for its retry interval runs at once."""
        job = self._job(consumer_id, dl_id)
        if job is None:
            return None
        status = job.get_status(refresh=True)
        if status in PENDING:
            pass
        elif status == JobStatus.SCHEDULED:
            ScheduledJobRegistry(queue=self.queue).remove(job)
            self.queue.enqueue_job(job)
        elif status == JobStatus.FAILED:
            FailedJobRegistry(queue=self.queue).requeue(job)
        else:  # finished, stopped or canceled: put it back on the queue
            self.queue.enqueue_job(job)
        return self.get(consumer_id, dl_id)

    def replay_all(self, consumer_id) -> int:
        ids = [raw.decode() for raw in self.redis.zrange(keys.dead_letter_index(consumer_id), 0, -1)]
        return sum(1 for dl_id in ids if self.replay(consumer_id, dl_id) is not None)

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
