"""A deleted consumer's dead letters go once its last worker is gone, whoever deleted it and whenever.

The API purges them at DELETE, but a worker that is still stopping can dead-letter one more message after
that; and a consumer deleted while the supervisor was down never reaches a running supervisor's stop path."""
from __future__ import annotations

import signal
import uuid

from rq.job import Job

from processors.base import Record
from processors.context import ProcessorContext
from processors.dead_letters import DeadLetterQueue
from processors.policy import DeliveryPolicy
from schema import keys
from schema.models import Consumer
from schema.settings import Settings
from schema.spec import ProcessorSpec
from tests.support.kafka import wait_for


def _dead_letter(runtime, cid: str) -> str:
    """What a worker's pipeline does when it gives up on a message under on_error=dead_letter."""
    queue = DeadLetterQueue(ProcessorContext(settings=Settings.from_env(), consumer_id=cid,
                                             bootstrap_servers=runtime.bootstrap, redis=runtime.redis))
    spec = ProcessorSpec(id="p-1", processor_type="test_collector", config={"path": "/dev/null"},
                         on_error="dead_letter")
    return queue.send(spec, DeliveryPolicy(on_error="dead_letter", dead_letter_retry_intervals=(3600,)),
                      Record("t", 0, 7, b"late"), RuntimeError("target down"), 3)


def _delete_row(runtime, cid: str) -> None:
    with runtime.sessions() as session, session.begin():
        session.delete(session.get(Consumer, uuid.UUID(cid)))


def test_dead_letter_left_by_a_stopping_worker_is_purged_when_the_worker_is_gone(runtime, topic_factory):
    cid, _ = runtime.create_consumer(topic_factory(partitions=1))
    keep_cid, _ = runtime.create_consumer(topic_factory(partitions=1))
    runtime.start_supervisor()
    runtime.worker_pid(cid)
    runtime.worker_pid(keep_cid)
    kept = _dead_letter(runtime, keep_cid)
    late = _dead_letter(runtime, cid)  # as if enqueued after the API's purge, while the worker stops
    _delete_row(runtime, cid)
    runtime.command(cid, "delete", 2)
    wait_for(lambda: not runtime.redis.exists(keys.dead_letter_index(cid)), timeout=30,
             message="the deleted consumer's dead-letter index purged")
    assert not runtime.redis.exists(keys.replica_state_key(cid, 0))
    assert Job.fetch_many([late, kept], connection=runtime.redis)[0] is None
    # another consumer's dead letters are untouched
    assert runtime.redis.zcard(keys.dead_letter_index(keep_cid)) == 1
    assert Job.fetch_many([kept], connection=runtime.redis)[0] is not None


def test_consumer_deleted_while_the_supervisor_was_down_loses_its_dead_letters_at_the_restart(runtime,
                                                                                               topic_factory):
    cid, _ = runtime.create_consumer(topic_factory(partitions=1))
    supervisor = runtime.start_supervisor()
    runtime.worker_pid(cid)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(15) == 0
    job_id = _dead_letter(runtime, cid)
    _delete_row(runtime, cid)
    runtime.start_supervisor()
    wait_for(lambda: not runtime.redis.exists(keys.dead_letter_index(cid)), timeout=30,
             message="dead letters of a consumer deleted while the supervisor was down purged")
    assert Job.fetch_many([job_id], connection=runtime.redis)[0] is None
