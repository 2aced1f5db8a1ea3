"""The pipeline waits between retries through the worker's callable (pause + poll), never by itself."""
from __future__ import annotations

from processors.base import BaseProcessor, Record, RetriableError
from processors.pipeline import Pipeline
from processors.policy import DeliveryPolicy
from schema.spec import ProcessorSpec


class DownFor(BaseProcessor):
    """Fails the first ``failures`` attempts, then accepts."""

    def __init__(self, failures: int):
        super().__init__({})
        self.failures, self.attempts = failures, 0

    def process(self, batch):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise RetriableError("sink down")


def _pipeline(processor, **policy) -> Pipeline:
    spec = ProcessorSpec(id="p", processor_type="down")
    return Pipeline([(spec, processor)], [DeliveryPolicy(**policy)], consumer_id="c")


def test_every_wait_between_retries_goes_through_the_provided_callable():
    waits: list[float] = []
    processor = DownFor(failures=3)
    pipeline = _pipeline(processor, max_retries=5, retry_backoff=1.0, retry_backoff_max=3.0)
    pipeline.wait_with(waits.append)  # a recorder instead of the worker's pause-and-poll: nothing sleeps
    pipeline.deliver([Record("t", 0, 0, b"v")])
    assert processor.attempts == 4 and waits == [1.0, 2.0, 3.0]  # exponential, capped, one wait per retry


def test_an_interrupted_pipeline_does_not_wait_again():
    waits: list[float] = []
    processor = DownFor(failures=100)
    pipeline = _pipeline(processor, max_retries=100, retry_backoff=1.0)

    def wait(seconds):
        waits.append(seconds)
        pipeline.interrupt()  # a stop requested while waiting

    pipeline.wait_with(wait)
    try:
        pipeline.deliver([Record("t", 0, 0, b"v")])
    except RetriableError:
        pass
    else:
        raise AssertionError("an interrupted batch must not count as delivered")
    assert waits == [1.0] and processor.attempts == 2
