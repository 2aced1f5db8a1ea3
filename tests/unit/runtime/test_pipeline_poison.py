"""A data error is isolated at once; only transient errors cost whole-batch retries."""
from __future__ import annotations

import pytest

from processors.base import BaseProcessor, PoisonMessageError, Record, RetriableError
from processors.pipeline import Pipeline
from processors.policy import DeliveryPolicy
from schema.spec import ProcessorSpec


class Refuses(BaseProcessor):
    """Raises ``error`` for any batch holding offset 42; counts attempts on the full batch."""

    def __init__(self, error: type[Exception]):
        super().__init__({})
        self.error, self.full_batch_attempts, self.flushed, self.pending = error, 0, [], []

    def process(self, batch):
        if len(batch) == 100:
            self.full_batch_attempts += 1
        self.pending = [m.offset() for m in batch]
        if 42 in self.pending:
            raise self.error("value of offset 42 is not JSON")

    def flush(self):
        self.flushed.extend(self.pending)


def _pipeline(processor, on_error: str, waits: list) -> Pipeline:
    spec = ProcessorSpec(id="p", processor_type="refuses", on_error=on_error)
    pipeline = Pipeline([(spec, processor)], [DeliveryPolicy(on_error=on_error, max_retries=5, retry_backoff=0.5)],
                        consumer_id="c")
    pipeline.wait_with(waits.append)
    return pipeline


BATCH = [Record("t", 0, i, b"v") for i in range(100)]


def test_a_poison_message_is_isolated_without_retrying_the_whole_batch():
    waits: list[float] = []
    processor = Refuses(PoisonMessageError)
    _pipeline(processor, "skip", waits).deliver(BATCH)
    assert processor.full_batch_attempts == 1 and waits == []  # no backoff at all
    assert sorted(processor.flushed) == [i for i in range(100) if i != 42]


def test_a_transient_error_is_still_retried_on_the_whole_batch_first():
    waits: list[float] = []
    processor = Refuses(RetriableError)
    _pipeline(processor, "skip", waits).deliver(BATCH)
    assert processor.full_batch_attempts == 6 and len(waits) == 5
    assert sorted(processor.flushed) == [i for i in range(100) if i != 42]


def test_a_poison_message_under_retry_fails_the_batch_at_once():
    waits: list[float] = []
    processor = Refuses(PoisonMessageError)
    with pytest.raises(PoisonMessageError):
        _pipeline(processor, "retry", waits).deliver(BATCH)
    assert processor.full_batch_attempts == 1 and waits == [] and processor.flushed == []


def test_the_worker_hears_why_a_batch_is_retried_and_when_it_went_through():
    reports: list[str] = []
    processor = Refuses(RetriableError)
    pipeline = _pipeline(processor, "skip", [])
    pipeline.report_with(reports.append)
    pipeline.deliver(BATCH)
    assert reports[0].startswith("RetryingBatch: processor p (refuses) attempt 1 failed: RetriableError")
    assert reports[-1] == ""
