"""The worker's life: connect, then consume batches -> processors -> store offsets, until told to stop.

At-least-once: offsets are stored (and committed in the background by librdkafka) only after every
processor has durably accepted the batch; a batch that fails is never stored, so it is redelivered. The first
batch after an assignment is committed at once, then librdkafka commits every ``KCM_COMMIT_INTERVAL_MS``: a
worker killed soon after each start (a crash loop) still moves its offsets forward instead of re-reading the
same backlog every time.

Between retries of a failing batch the pipeline waits through ``wait_paused`` (after Kafka Connect's
WorkerSinkTask): the assigned partitions are paused and the consumer keeps polling, so a long retry never
costs the group membership; offsets are never stored for a partition revoked while its batch was in flight.

A paused consumer (POST /consumers/{id}/pause/) is held the same way, between batches: the stored offsets are
committed, every assigned partition (and any assigned later) is paused, and the loop keeps polling until the
pause key says resume (``status.pause_wanted``, workers/control.py) or a stop is requested; librdkafka then
fetches on from the position after the last delivered message, in the same process and group generation.
"""
from __future__ import annotations

import logging
import signal
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from processors.base import FatalError
from processors.pipeline import Pipeline
from schema.exits import (
    CONNECT_TIMEOUT,
    EXIT_COLD_STOP,
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_SOFTWARE,
    EXIT_UNAVAILABLE,
)
from schema.kafka_settings import refused_message
from schema.ratelimited_log import Outage
from schema.secrets import Redactor
from workers.config import ConsumerConfigError, is_cooperative
from workers.heartbeat import WorkerStatus

log = logging.getLogger("kcm.worker")

# credentials or ACLs that do not work will not start working by retrying: configuration errors (FATAL)
AUTH_ERROR_CODES = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})
AUTHZ_ERROR_CODES = frozenset({KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED})
# one poll while paused between retries lasts at most this long: rebalances, heartbeats and a stop are served
POLL_WHILE_PAUSED = 0.2


class WorkerExit(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Runner:
    def __init__(self, spec, settings, config: dict, pipeline: Pipeline, status: WorkerStatus,
                 redactor: Redactor | None = None):
        self.spec = spec
        # librdkafka's messages may echo a resolved secret (a broker list, a setting): cleaned before any use
        self.redact = redactor or Redactor()
        self.settings = settings
        self.pipeline = pipeline
        self.status = status
        self.stopping = False
        self._brokers_down = ""
        self._fatal_error: KafkaError | None = None
        self._last_logged: dict[str, float] = {}
        self._auth_error = ""
        self._paused = False  # waiting between retries: partitions assigned meanwhile are paused too
        self._held = False  # paused on request (POST .../pause/): partitions assigned meanwhile are paused too
        self._lost = Outage(log, "PartitionsLost", f"consumer={spec.consumer_id} replica={spec.replica} assignment")
        self._revoked: set[int] = set()  # partitions revoked or lost since the batch in flight was fetched
        self._commit_next = False  # commit right after the next stored batch (the first after an assignment)
        config = dict(config, error_cb=self._on_kafka_error)
        self._incremental = is_cooperative(config)
        self.consumer = self._create_consumer(config)
        pipeline.wait_with(self.wait_paused)
        pipeline.report_with(self._report_retry)
        # the recent errors and the per-processor figures the heartbeat publishes (docs/monitoring.md)
        status.recent_errors.redact = self.redact
        pipeline.record_errors_with(lambda processor, kind, text: status.recent_errors.record(kind, text, processor))
        status.processors = pipeline.published_stats

    def _create_consumer(self, config: dict) -> Consumer:
        """librdkafka refuses a bad setting here (``_INVALID_ARG``): a configuration error, not a crash."""
        try:
            return Consumer(config)
        except KafkaException as exc:
            err = exc.args[0]
            text = refused_message(err.str(), self.spec.security, self.redact)
            if err.code() == KafkaError._INVALID_ARG:
                raise ConsumerConfigError(f"librdkafka refused the consumer configuration: {text}") from None
            raise WorkerExit(EXIT_SOFTWARE, f"KafkaError: {err.name()}: {text}") from None

    # ------------------------------------------------------------------ callbacks (main thread, inside consume)
    def _on_kafka_error(self, err: KafkaError) -> None:
        text = self.redact(err.str())
        self.status.errors += 1
        self.status.last_error = f"KafkaError: {err.name()}: {text}"
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down = text
        if err.fatal():
            self._fatal_error = err
        if err.code() in AUTH_ERROR_CODES:
            self._auth_error = f"KafkaAuthenticationFailed: {text}"
        # librdkafka repeats a connection error on every retry: log each distinct one, then once a minute
        now = time.monotonic()
        if self._last_logged.get(text, 0.0) > now - 60 and not err.fatal():
            return
        self._last_logged[text] = now
        log.warning("KafkaError consumer=%s replica=%s code=%s fatal=%s: %s", self.spec.consumer_id,
                    self.spec.replica, err.name(), err.fatal(), text)
        self.status.recent_errors.record("kafka", self.status.last_error)  # as rate-limited as the log line

    def _on_assign(self, consumer, partitions) -> None:
        resume = self.pipeline.committed_offsets([(tp.topic, tp.partition) for tp in partitions])
        holding = self._paused or self._held
        if resume or holding:  # an exactly-once sink keeps its own offsets: start where it says
            for tp in partitions:
                if (tp.topic, tp.partition) in resume:
                    tp.offset = resume[(tp.topic, tp.partition)]
            (consumer.incremental_assign if self._incremental else consumer.assign)(partitions)
            if holding:  # handed over while we wait between retries or are paused: nothing is read until resumed
                consumer.pause(partitions)
        self.status.partitions = sorted({*self.status.partitions, *(f"{tp.topic}:{tp.partition}" for tp in partitions)})
        self.status.assignments += 1
        self._commit_next = True
        if partitions:
            self._lost.recovered()  # after a loss: one line saying how long the replica held nothing
        log.info("PartitionsAssigned consumer=%s replica=%s partitions=%s", self.spec.consumer_id, self.spec.replica,
                 ",".join(f"{tp.topic}:{tp.partition}" for tp in partitions))

    def _on_revoke(self, consumer, partitions) -> None:
        self._commit_stored()
        self._revoked.update(tp.partition for tp in partitions)
        gone = {f"{tp.topic}:{tp.partition}" for tp in partitions}
        self.status.partitions = [p for p in self.status.partitions if p not in gone]
        log.info("PartitionsRevoked consumer=%s replica=%s partitions=%s", self.spec.consumer_id, self.spec.replica,
                 ",".join(sorted(gone)))

    def _on_lost(self, consumer, partitions) -> None:
        """librdkafka revokes involuntarily (no commit is possible): logged once per loss, then summarised while
        it repeats (an empty assignment is reported lost again while the group cannot be rejoined), and once more
        when partitions are assigned again (``_on_assign``)."""
        self._revoked.update(tp.partition for tp in partitions)
        gone = {f"{tp.topic}:{tp.partition}" for tp in partitions}
        self.status.partitions = [p for p in self.status.partitions if p not in gone]
        self._lost.failed(f"lost (librdkafka: session timed out, member expired or max.poll.interval.ms exceeded), "
                          f"rejoining the group: partitions={','.join(sorted(gone)) or '(none held)'}")

    # ------------------------------------------------------------------ life
    def request_stop(self, signum, _frame) -> None:
        if self.stopping:  # second signal: cold stop, nothing committed, the batch is redelivered
            import os

            os._exit(EXIT_COLD_STOP)
        self.stopping = True
        self.status.phase = "stopping"
        interrupt = getattr(self.pipeline, "interrupt", None)
        if interrupt is not None:  # stop sleeping between retries of a failing batch
            interrupt()
        log.info("StopRequested consumer=%s replica=%s signal=%s", self.spec.consumer_id, self.spec.replica,
                 signal.Signals(signum).name)

    def connect(self) -> None:
        """Reach Kafka before reporting ready; an unreachable cluster is a failed start, a missing topic is not."""
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while True:
            try:
                metadata = self.consumer.list_topics(self.spec.topic, timeout=1.0)
                break
            except KafkaException as exc:
                self.consumer.poll(0)  # serve error_cb
                if self._auth_error:
                    raise WorkerExit(EXIT_CONFIG, self._auth_error) from None
                if self._brokers_down or time.monotonic() >= deadline:
                    detail = self.status.last_error or self.redact(exc.args[0].str())
                    raise WorkerExit(EXIT_UNAVAILABLE, f"KafkaUnreachable: {self.spec.bootstrap_servers}: {detail}") from None
        topic = metadata.topics.get(self.spec.topic)
        if topic is None or topic.error is not None:
            self.status.last_error = (f"TopicNotFound: topic {self.spec.topic!r} does not exist on "
                                      f"{self.spec.bootstrap_servers} (waiting for it)")
            log.warning("TopicNotFound consumer=%s topic=%s", self.spec.consumer_id, self.spec.topic)
        else:
            self.status.last_error = ""
        self._brokers_down = ""

    def run(self) -> int:
        self.connect()
        self.consumer.subscribe([self.spec.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        self.status.phase = "consuming"
        log.info("WorkerConsuming consumer=%s replica=%s generation=%s topic=%s group=%s", self.spec.consumer_id,
                 self.spec.replica, self.spec.generation, self.spec.topic, self.spec.group_id)
        batch_size, timeout = self.settings.batch_size, self.settings.batch_timeout
        while not self.stopping:
            if self._paused_wanted():  # once per poll, never per message
                self._hold()
                continue
            if self._revoked:  # a rebalance since the last batch: only the next batch's partitions matter now
                self._revoked.clear()
            batch = self.consumer.consume(num_messages=batch_size, timeout=timeout)
            if self._auth_error:
                raise WorkerExit(EXIT_CONFIG, self._auth_error)
            if self._fatal_error is not None:
                raise WorkerExit(EXIT_SOFTWARE, f"KafkaFatalError: {self.redact(self._fatal_error.str())}")
            if batch:
                self._handle(batch)
        self._commit_stored()
        return EXIT_OK

    def _handle(self, batch: list) -> None:
        good = batch
        if any(map(Message.error, batch)):  # rare: no per-message filtering list in the common case
            good = [m for m in batch if m.error() is None]
            self._record_message_errors(m for m in batch if m.error() is not None)
            if not good:
                return
        try:
            self.pipeline.deliver(good)
        except FatalError:
            raise
        except Exception as exc:
            # the batch is not stored: the replacement worker gets it again (at-least-once)
            if self.stopping:  # retries were cut short by our own warm stop: a clean exit, not a crash
                log.info("DeliveryInterrupted consumer=%s replica=%s: batch of %d left for redelivery",
                         self.spec.consumer_id, self.spec.replica, len(good))
                return
            raise WorkerExit(EXIT_SOFTWARE, f"DeliveryFailed: {type(exc).__name__}: {exc}") from exc
        # messages of one partition arrive in order: the last one seen is the highest offset. Keyed by partition
        # alone: a worker subscribes to one topic (half the cost of (topic, partition) keys, the loop's
        # largest Python item)
        last = {m.partition(): m for m in good}
        if self._revoked:  # revoked while the batch was delivered: its new owner reads it again (at-least-once)
            last = self._owned(last)
        if last:
            self.consumer.store_offsets(offsets=[TopicPartition(m.topic(), p, m.offset() + 1)
                                                 for p, m in last.items()])
            if self._commit_next:  # the first batch after an assignment: commit now, not a timer later
                self._commit_next = False
                self._commit_stored()
        self.status.messages += len(good)
        self.status.bytes += sum(map(len, good))
        if self.status.last_error:
            self.status.last_error = ""  # consuming again: whatever went wrong before has passed

    def _owned(self, last: dict) -> dict:
        owned = {p: m for p, m in last.items() if p not in self._revoked}
        log.info("OffsetsNotStored consumer=%s replica=%s partitions=%s: revoked while the batch was delivered",
                 self.spec.consumer_id, self.spec.replica, ",".join(str(p) for p in sorted(set(last) - set(owned))))
        return owned

    # ------------------------------------------------------------------ waiting between retries
    def _report_retry(self, reason: str) -> None:
        """The pipeline's report: why a batch is being retried (the heartbeat shows it), or "" once through."""
        self.status.retrying = bool(reason)
        if reason:
            self.status.last_error = reason

    def wait_paused(self, seconds: float) -> None:
        """The pipeline's wait between retries: pause every assigned partition and keep polling (heartbeats,
        rebalances, max.poll.interval.ms) until the wait is over or a stop is requested; resume after."""
        deadline = time.monotonic() + seconds
        rewound: dict[int, int] = {}
        self._paused = True
        try:
            self.consumer.pause(self.consumer.assignment())
            while not self.stopping and (left := deadline - time.monotonic()) > 0:
                message = self.consumer.poll(min(left, POLL_WHILE_PAUSED))
                if message is not None:
                    self._rewind(message, rewound)
        finally:
            self._paused = False
            assignment = self.consumer.assignment()
            if assignment:
                self.consumer.resume(assignment)

    # ------------------------------------------------------------------ paused on request
    def _paused_wanted(self) -> bool:
        """The pause key's word for this generation, else the spec's (a worker spawned while paused)."""
        wanted = self.status.pause_wanted
        return self.spec.paused if wanted is None else wanted

    def _hold(self) -> None:
        """Paused between batches: commit what was delivered, pause every assigned partition and keep polling
        (group membership, heartbeats, max.poll.interval.ms, rebalances) until resumed or stopped. A message
        fetched before the pause is rewound, so it comes again after the resume: no gap, no duplicate."""
        self._commit_stored()
        self._held = True
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.pause(assignment)
        self.status.paused = True
        log.info("ConsumerPaused consumer=%s replica=%s partitions=%s", self.spec.consumer_id, self.spec.replica,
                 ",".join(sorted(self.status.partitions)) or "(none yet)")
        rewound: dict[int, int] = {}
        try:
            while not self.stopping and self._paused_wanted():
                message = self.consumer.poll(POLL_WHILE_PAUSED)
                if self._auth_error:
                    raise WorkerExit(EXIT_CONFIG, self._auth_error)
                if self._fatal_error is not None:
                    raise WorkerExit(EXIT_SOFTWARE, f"KafkaFatalError: {self.redact(self._fatal_error.str())}")
                if message is not None:
                    self._rewind(message, rewound)
        finally:
            self._held = False
            self.status.paused = False
        if self.stopping:  # the stop path commits and closes: nothing to resume
            return
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.resume(assignment)
        log.info("ConsumerResumed consumer=%s replica=%s partitions=%s", self.spec.consumer_id, self.spec.replica,
                 ",".join(sorted(self.status.partitions)) or "(none yet)")

    def _rewind(self, message: Message, rewound: dict[int, int]) -> None:
        """A message read while paused (fetched before the pause): seek back so it comes again after resume."""
        if message.error() is not None:
            self._record_message_errors([message])
            return
        partition, offset = message.partition(), message.offset()
        if partition in rewound and rewound[partition] <= offset:
            return  # that partition already restarts at or before this message
        rewound[partition] = offset
        tp = TopicPartition(message.topic(), partition, offset)
        try:
            self.consumer.pause([tp])
            self.consumer.seek(tp)
        except KafkaException as exc:  # revoked meanwhile: its new owner reads it from the committed offset
            log.info("RewindSkipped consumer=%s partition=%s: %s", self.spec.consumer_id, partition,
                     exc.args[0].str())

    def _record_message_errors(self, errored) -> None:
        for m in errored:
            err = m.error()
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            self.status.errors += 1
            if err.code() in AUTHZ_ERROR_CODES:
                raise WorkerExit(EXIT_CONFIG, f"KafkaAuthorizationFailed: {err.name()}: {err.str()}")
            if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                self.status.last_error = f"TopicNotFound: topic {self.spec.topic!r}: {err.str()}"
            else:
                self.status.last_error = f"KafkaError: {err.name()}: {err.str()}"
            self.status.recent_errors.record("kafka", self.status.last_error)
            if err.fatal():
                raise WorkerExit(EXIT_SOFTWARE, self.status.last_error)

    def _commit_stored(self) -> None:
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:  # nothing stored since the last commit
                self.status.last_error = f"CommitFailed: {exc.args[0].str()}"
                self.status.recent_errors.record("kafka", self.status.last_error)
                log.warning("CommitFailed consumer=%s: %s", self.spec.consumer_id, exc.args[0].str())

    def close(self) -> None:
        try:
            self.consumer.close()
        except Exception as exc:  # close must not hide the reason we are closing
            log.warning("ConsumerCloseFailed consumer=%s: %s", self.spec.consumer_id, exc)

