"""A warm stop reaches every stage: a processor waiting out its own delay (http_sink's Retry-After) stops too."""
from __future__ import annotations

import threading
import time

import pytest

from processors.base import BaseProcessor, Record
from processors.http_sink import HttpSinkProcessor
from processors.pipeline import Pipeline
from processors.policy import DeliveryPolicy
from schema.spec import ProcessorSpec

pytestmark = pytest.mark.unit


class Waiter(BaseProcessor):
    """A sink whose process() waits up to 30 s unless interrupted (a Retry-After of its own)."""

    def __init__(self):
        super().__init__({})
        self.stop = threading.Event()

    def process(self, batch):
        if not self.stop.wait(30):
            raise AssertionError("never interrupted")
        raise TimeoutError("interrupted")

    def interrupt(self):
        self.stop.set()


def test_pipeline_interrupt_reaches_every_stage_and_ends_a_processors_own_wait():
    waiter = Waiter()
    specs = [ProcessorSpec(id="w", processor_type="waiter")]
    policy = DeliveryPolicy(on_error="retry", max_retries=0, retry_backoff=0, retry_backoff_max=0)
    pipeline = Pipeline(list(zip(specs, [waiter], strict=True)), [policy], consumer_id="c")
    failed = []
    worker = threading.Thread(target=lambda: _deliver(pipeline, failed))
    started = time.monotonic()
    worker.start()
    time.sleep(0.2)  # let deliver() enter the processor's wait (the assertion below does not depend on it)
    pipeline.interrupt()
    worker.join(10)
    assert not worker.is_alive() and time.monotonic() - started < 10
    assert failed, "the interrupted batch must fail (its offsets stay), not count as delivered"


def _deliver(pipeline, failed):
    try:
        pipeline.deliver([Record("t", 0, 0, b"v")])
    except Exception as exc:  # noqa: BLE001 (any failure is what the test expects)
        failed.append(exc)


def test_every_builtin_processor_accepts_interrupt():
    assert BaseProcessor({}).interrupt() is None
    assert HttpSinkProcessor.interrupt is not BaseProcessor.interrupt
