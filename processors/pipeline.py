"""A consumer's processors in their configured order, as the worker drives them: one batch at a time.

``deliver(batch)`` returns only when every processor has durably accepted the batch (or, under the
``dead_letter``/``skip`` policies, has accepted every message but the isolated failing ones, which were
dead-lettered or skipped); only then may the worker store the batch's offsets. Any exception leaves the
offsets where they were. Retry and isolation live here so the worker stays a plain consume loop.

Only transient failures are retried on the whole batch; a ``PoisonMessageError`` (a data error) is isolated at
once, so one bad message costs a bisection, not five full-batch retries with backoff. Retry failures are logged
rate-limited (the first, a summary a minute, the recovery: ``schema.ratelimited_log``), and reported to the
worker (``report_with``) so its heartbeat says it retries and why.

Every processor is built with the worker's ``processors.context.ProcessorContext``. The wait between retries is
a callable the worker provides (``wait_with``): it pauses the partitions and keeps polling, so a long retry
does not cost the group membership (without one, e.g. in tests, the pipeline just sleeps).

Per processor it counts batches, retries, dead-lettered and skipped messages and, for a step, the messages it
dropped (let not through; from the lengths of its input and output, less what its isolation dead-lettered or
skipped) (``stats``), and times each delivered batch into a fixed-bucket histogram (``latency``;
``KCM_WORKER_METRICS=false`` turns the timing off): O(1) per processor per batch, never per message.
``published_stats()`` is what the heartbeat thread publishes (schema/worker_metrics.py); every error path also
reports to the worker (``record_errors_with``) for its list of recent errors.

**Steps** (``processors.base.BaseStep``: ``filter``, ``json_transform``) change the batch for the processors after
them: ``deliver`` hands each later stage what the last step returned, and stops once a step has let nothing
through. Retry, isolation and ``on_error`` apply to a step as to a sink (isolation keeps what the good halves
returned, in order). The worker stores the offsets of the batch it consumed, so a dropped message counts as
processed once every later stage accepted the rest. A consumer without steps walks the same loop as before.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from time import perf_counter

from marshmallow import ValidationError
from tenacity import (
    Retrying,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
)

from processors import registry
from processors.base import BaseProcessor, BaseStep, FatalError, PoisonMessageError
from processors.context import ProcessorContext
from processors.policy import DeliveryPolicy, load_policy, split_config
from schema.ratelimited_log import Outages
from schema.spec import ProcessorSpec
from schema.worker_metrics import COUNTERS, BatchLatency

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(self, stages: list[tuple[ProcessorSpec, BaseProcessor]],
                 policies: list[DeliveryPolicy] | None = None, *, consumer_id: str = "",
                 context: ProcessorContext | None = None):
        self.stages = stages
        self.policies = policies or [DeliveryPolicy(on_error=spec.on_error) for spec, _ in stages]
        self.consumer_id = consumer_id or (context.consumer_id if context is not None else "")
        self.context = context
        self.stats = {spec.id: dict.fromkeys(COUNTERS, 0) for spec, _ in stages}
        self._isolated: dict[str, int] = {}  # per step: messages of the batch in flight its isolation gave up on
        self.latency = {spec.id: BatchLatency() for spec, _ in stages}
        self._timed = getattr(getattr(context, "settings", None), "worker_metrics", True)
        # what deliver() walks: no dictionary lookup per stage per batch; a step's attempt returns its output
        self._plan = [(spec, processor, policy, self.stats[spec.id], self.latency[spec.id],
                       self._transform if isinstance(processor, BaseStep) else self._attempt)
                      for (spec, processor), policy in zip(stages, self.policies, strict=True)]
        self._interrupted = threading.Event()
        self._wait = self._interrupted.wait
        self._dead_letters = None
        self._report = None  # the worker's callable: (error text or "") while a batch is retried / after
        self._record = None  # the worker's callable: (processor id, kind, text) on every error path
        self._retry_outages = Outages(log, "ProcessorRetrying")
        if any(p.on_error == "dead_letter" for p in self.policies):
            self._dead_letters = _dead_letter_queue(context)

    @classmethod
    def build(cls, specs: tuple[ProcessorSpec, ...] | list[ProcessorSpec], *, context: ProcessorContext,
              consumer_id: str = "") -> Pipeline:
        """Load and configure each processor; a bad type, config or policy is a FatalError (EX_CONFIG).

        ``consumer_id`` (tests) overrides the context's, so processors and dead letters agree on one id."""
        if consumer_id and isinstance(context, ProcessorContext) and consumer_id != context.consumer_id:
            context = dataclasses.replace(context, consumer_id=consumer_id)
        consumer_id = consumer_id or context.consumer_id
        stages, policies = [], []
        for spec in specs:
            try:
                processor_cls = registry.load(spec.processor_type)
                config = processor_cls.validate_config(spec.config)
                policies.append(load_policy(spec.on_error, split_config(spec.config)[0]))
            except (registry.UnknownProcessorType, registry.ProcessorLoadError) as exc:
                raise FatalError(str(exc)) from exc
            except ValidationError as exc:
                raise FatalError(f"processor {spec.id} ({spec.processor_type}) config invalid: {exc.messages}") from exc
            stages.append((spec, processor_cls(config, consumer_id=consumer_id, processor_id=spec.id,
                                               context=context)))
        if stages and isinstance(stages[-1][1], BaseStep):
            log.warning("processor %s (%s) is a step and the last processor: what it lets through goes nowhere",
                        stages[-1][0].id, stages[-1][0].processor_type)
        return cls(stages, policies, consumer_id=consumer_id, context=context)

    def open(self) -> None:
        for _spec, processor in self.stages:
            processor.open()

    def wait_with(self, wait) -> None:
        """Wait between retries with ``wait(seconds)`` (the worker's: pause the partitions, keep polling)."""
        self._wait = wait

    def report_with(self, report) -> None:
        """``report(text)`` when a batch starts being retried (why), ``report("")`` once it went through."""
        self._report = report

    def record_errors_with(self, record) -> None:
        """``record(processor_id, kind, text)`` on every error path (kinds: schema.worker_metrics.ERROR_KINDS)."""
        self._record = record

    def _error(self, spec: ProcessorSpec, kind: str, text: str) -> None:
        if self._record is not None:
            self._record(spec.id, kind, text)

    def published_stats(self) -> list[dict]:
        """Per processor, in order: its counters and its latency histogram (read by the heartbeat thread)."""
        return [{"id": spec.id, "type": spec.processor_type, **stats,
                 "latency": latency.published() if self._timed else None}
                for spec, _processor, _policy, stats, latency, _attempt in self._plan]

    def _sleep(self, seconds: float) -> None:
        if not self._interrupted.is_set():
            self._wait(seconds)

    def interrupt(self) -> None:
        """Stop waiting between retries (warm shutdown): the batch in flight fails, its offsets stay. Every stage
        is told too, so a processor waiting out its own delay (http_sink's Retry-After) stops as well."""
        self._interrupted.set()
        for _spec, processor in self.stages:
            processor.interrupt()

    def deliver(self, batch) -> None:
        if not batch:
            return
        timed = self._timed
        try:
            for spec, processor, policy, stats, latency, attempt in self._plan:
                if timed:  # one perf_counter pair and one bucket increment per processor per batch
                    started = perf_counter()
                    passed = self._deliver_stage(spec, processor, policy, batch, attempt)
                    latency.observe(perf_counter() - started)
                else:
                    passed = self._deliver_stage(spec, processor, policy, batch, attempt)
                stats["batches"] += 1
                if passed is not None:  # a step: the later stages get what it let through
                    if len(passed) != len(batch):  # once per batch; what isolation gave up is counted as such
                        stats["dropped"] += len(batch) - len(passed) - self._isolated.pop(spec.id, 0)
                    if not passed:
                        return
                    batch = passed
        except BaseException:
            self._isolated.clear()  # a failed batch's give-ups must not be subtracted from the next one's drops
            raise

    # ------------------------------------------------------------------ policy
    def _deliver_stage(self, spec: ProcessorSpec, processor: BaseProcessor, policy: DeliveryPolicy, batch,
                       attempt=None):
        """Deliver ``batch`` to one stage under its policy; a step's output (None for a sink)."""
        attempt = attempt or self._attempt
        try:  # the common case, without building the retry machinery for every batch (~30 µs each)
            return attempt(processor, batch)
        except FatalError:
            raise
        except PoisonMessageError as exc:  # a data error: retrying the whole batch cannot help
            if policy.on_error == "retry":
                log.error("processor %s (%s) refused a batch of %d for its data (on_error=retry: not retried, "
                          "offsets not advanced): %s", spec.id, spec.processor_type, len(batch), exc)
                self._error(spec, "batch_failed", f"refused a batch of {len(batch)} for its data (on_error=retry: "
                            f"not retried, offsets not advanced): {type(exc).__name__}: {exc}")
                raise
            log.warning("processor %s (%s) refused a batch of %d for its data; isolating the failing message(s) "
                        "for %s without retrying: %s", spec.id, spec.processor_type, len(batch), policy.on_error, exc)
            self._error(spec, "batch_failed", f"refused a batch of {len(batch)} for its data; isolating the "
                        f"failing message(s) for {policy.on_error}: {type(exc).__name__}: {exc}")
            return self._isolate(spec, processor, policy, batch, exc, 1, attempt)
        except Exception as exc:
            first_failure = [exc]

        def again(processor, batch):
            if first_failure:  # tenacity counts, logs and waits after the attempt above as its first
                raise first_failure.pop()
            return attempt(processor, batch)

        retrying = Retrying(
            stop=stop_after_attempt(policy.max_retries + 1) | stop_after_delay(policy.retry_timeout)
            | stop_when_event_set(self._interrupted),
            wait=wait_exponential(multiplier=policy.retry_backoff, max=policy.retry_backoff_max),
            retry=retry_if_not_exception_type((FatalError, PoisonMessageError)),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(spec, state),
            reraise=True,
        )
        outage = self._retry_outages[f"processor {spec.id} ({spec.processor_type})"]
        try:
            passed = retrying(again, processor, batch)
        except FatalError:
            raise
        except Exception as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            if policy.on_error == "retry" or self._interrupted.is_set():
                log.error("processor %s (%s) failed %d time(s) on a batch of %d; offsets not advanced: %s: %s",
                          spec.id, spec.processor_type, attempts, len(batch), type(exc).__name__, exc)
                if not self._interrupted.is_set():  # cut short by a warm stop: not a failure of the batch
                    self._error(spec, "batch_failed", f"failed {attempts} time(s) on a batch of {len(batch)}; "
                                f"offsets not advanced: {type(exc).__name__}: {exc}")
                raise
            log.warning("processor %s (%s) failed %d time(s) on a batch of %d; isolating the failing "
                        "message(s) for %s", spec.id, spec.processor_type, attempts, len(batch), policy.on_error)
            self._error(spec, "batch_failed", f"failed {attempts} time(s) on a batch of {len(batch)}; isolating "
                        f"the failing message(s) for {policy.on_error}: {type(exc).__name__}: {exc}")
            passed = self._isolate(spec, processor, policy, batch, exc, attempts, attempt)
            outage.recovered()  # the batch went through, bar the isolated messages
        else:
            outage.recovered()
        finally:
            if self._report is not None:
                self._report("")
        return passed

    def _attempt(self, processor: BaseProcessor, batch) -> None:
        try:
            processor.process(batch)
            processor.flush()
        except Exception:
            processor.discard()  # a retried batch must not carry the failed attempt's leftovers
            raise

    @staticmethod
    def _transform(step: BaseStep, batch) -> list:
        passed = step.transform(batch)
        return passed if isinstance(passed, list) else list(passed)

    def _isolate(self, spec, processor, policy, batch, error: Exception, attempts: int, attempt=None):
        """Halve a failing batch until the failing messages stand alone; the rest is delivered. Returns what
        the delivered pieces of a step let through, in order (None for a sink)."""
        attempt = attempt or self._attempt
        passed: list | None = [] if attempt is self._transform else None  # a staticmethod: one object
        if len(batch) == 1:
            self._give_up(spec, policy, batch[0], error, attempts)
            if passed is not None:  # a step's: not let through, yet not a drop (deliver subtracts it)
                self._isolated[spec.id] = self._isolated.get(spec.id, 0) + 1
            return passed
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            if self._interrupted.is_set():  # warm stop: leave the rest undelivered, offsets not advanced
                raise error
            try:
                piece = attempt(processor, half)
            except FatalError:
                raise
            except Exception as exc:
                piece = self._isolate(spec, processor, policy, half, exc, attempts + 1, attempt)
            if passed is not None:
                passed.extend(piece)
        return passed

    def _give_up(self, spec, policy, message, error: Exception, attempts: int) -> None:
        where = f"{message.topic()}/{message.partition()}@{message.offset()}"
        if policy.on_error == "skip":
            self.stats[spec.id]["skipped"] += 1
            log.warning("processor %s (%s) SKIPPED message %s after %d attempt(s) (on_error=skip, lossy): %s: %s",
                        spec.id, spec.processor_type, where, attempts, type(error).__name__, error)
            self._error(spec, "skipped", f"skipped message {where} after {attempts} attempt(s): "
                        f"{type(error).__name__}: {error}")
            return
        job_id = self._dead_letters.send(spec, policy, message, error, attempts)
        self.stats[spec.id]["dead_lettered"] += 1
        log.warning("processor %s (%s) dead-lettered message %s as %s after %d attempt(s): %s: %s",
                    spec.id, spec.processor_type, where, job_id, attempts, type(error).__name__, error)
        self._error(spec, "dead_lettered", f"dead-lettered message {where} as {job_id} after {attempts} "
                    f"attempt(s): {type(error).__name__}: {error}")

    def _log_retry(self, spec: ProcessorSpec, state) -> None:
        self.stats[spec.id]["retries"] += 1
        exc = state.outcome.exception() if state.outcome else None
        self._retry_outages[f"processor {spec.id} ({spec.processor_type})"].failed(
            f"attempt {state.attempt_number} failed ({type(exc).__name__}: {exc}); retrying in "
            f"{state.next_action.sleep if state.next_action else 0:.2f} s")
        if self._report is not None:
            self._report(f"RetryingBatch: processor {spec.id} ({spec.processor_type}) attempt "
                         f"{state.attempt_number} failed: {type(exc).__name__}: {exc}")
        self._error(spec, "retry", f"attempt {state.attempt_number} failed: {type(exc).__name__}: {exc}; retrying in "
                    f"{state.next_action.sleep if state.next_action else 0:.2f} s")

    # ------------------------------------------------------------------ offsets and shutdown
    def committed_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Where to resume per partition when processors keep their own offsets.

        A partition is reported only when EVERY processor keeps an offset for it (the smallest wins):
        seeking past Kafka's commit for one exactly-once sink would skip messages for the others."""
        result: dict[tuple[str, int], int] | None = None
        for _spec, processor in self.stages:
            if isinstance(processor, BaseStep):  # a step writes nothing: the sinks' offsets decide
                continue
            own = processor.committed_offsets(partitions)
            if result is None:
                result = dict(own)
            else:
                result = {tp: min(offset, own[tp]) for tp, offset in result.items() if tp in own}
        return result or {}

    def close(self) -> None:
        for spec, processor in self.stages:
            try:
                processor.close()
            except Exception:  # close must not hide the reason we are closing
                log.exception("processor %s (%s) failed to close", spec.id, spec.processor_type)


def _dead_letter_queue(context: ProcessorContext | None):
    from processors.dead_letters import DeadLetterQueue

    if not isinstance(context, ProcessorContext) or context.redis is None:
        raise FatalError("on_error=dead_letter needs a ProcessorContext with Redis for the rq dead-letter queue")
    return DeadLetterQueue(context)


def replay_through(specs: list[ProcessorSpec], record, context: ProcessorContext) -> str | None:
    """Deliver a dead letter of a step through that step and the processors after it (``specs``, in order, with
    their current configs). Every failure raises, so the rq job is retried: no retries here, no new dead letter.

    Returns the step that dropped the message (``"id (type)"``), or None when every processor accepted it."""
    strict = [dataclasses.replace(spec, on_error="retry", config={**spec.config, "max_retries": 0}) for spec in specs]
    pipeline = Pipeline.build(strict, context=context)
    pipeline.open()
    try:
        pipeline.deliver([record])
    finally:
        pipeline.close()
    return next((f"{spec.id} ({spec.processor_type})" for spec in specs if pipeline.stats[spec.id]["dropped"]), None)
