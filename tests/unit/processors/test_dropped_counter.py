"""The pipeline's ``dropped`` counter (pure logic): what a step let not through, once per batch, its isolated
dead letters and skips not counted twice, and published with the other counters."""
from __future__ import annotations

import pytest

from processors.base import BaseProcessor, BaseStep, FatalError, PoisonMessageError, Record
from processors.filter import FilterStep
from processors.json_transform import JsonTransformStep
from processors.pipeline import Pipeline
from processors.policy import DeliveryPolicy
from schema.spec import ProcessorSpec
from schema.worker_metrics import COUNTERS


class Collector(BaseProcessor):
    def __init__(self):
        super().__init__({})
        self.flushed, self.pending = [], []

    def process(self, batch):
        self.pending = list(batch)

    def flush(self):
        self.flushed.extend(self.pending)
        self.pending = []


def _step(cls, **config):
    step = cls(cls.validate_config(config), processor_id="step")
    step.open()
    return step


def _pipeline(*stages, on_error="retry"):
    specs = [ProcessorSpec(id=f"s{i}", processor_type=type(p).__name__, on_error=on_error) for i, p in enumerate(stages)]
    policies = [DeliveryPolicy(on_error=on_error, max_retries=0, retry_backoff=0, retry_backoff_max=0) for _ in stages]
    return Pipeline(list(zip(specs, stages, strict=True)), policies, consumer_id="c")


def _orders(totals, poison=()):
    return [Record("t", 0, i, b"{oops" if i in poison else b'{"total": %d}' % total) for i, total in enumerate(totals)]


def test_a_filter_counts_what_it_let_not_through_per_batch_and_a_sink_drops_nothing():
    sink = Collector()
    pipeline = _pipeline(_step(FilterStep, condition="value.total >= 100"), sink)
    pipeline.deliver(_orders([150, 5, 7, 300]))
    pipeline.deliver(_orders([1, 2, 3]))  # all dropped: the sink is not called
    pipeline.deliver(_orders([100, 200]))  # nothing dropped
    assert pipeline.stats["s0"]["dropped"] == 5 and pipeline.stats["s1"]["dropped"] == 0
    assert len(sink.flushed) == 4
    published = {p["id"]: p for p in pipeline.published_stats()}
    assert set(COUNTERS) <= set(published["s0"]) and published["s0"]["dropped"] == 5


def test_a_steps_skipped_poison_counts_as_skipped_not_as_dropped():
    sink = Collector()
    pipeline = _pipeline(_step(FilterStep, condition="value.total >= 100"), sink, on_error="skip")
    pipeline.deliver(_orders([150, 5, 0, 300, 0, 9], poison={2, 4}))
    assert (pipeline.stats["s0"]["skipped"], pipeline.stats["s0"]["dropped"]) == (2, 2)  # 5 and 9 dropped
    assert [m.offset() for m in sink.flushed] == [0, 3]

    transform = _pipeline(_step(JsonTransformStep, rename={"total": "amount"}), Collector(), on_error="skip")
    transform.deliver(_orders([1, 0, 3], poison={1}))
    assert (transform.stats["s0"]["skipped"], transform.stats["s0"]["dropped"]) == (1, 0)


class Picky(BaseStep):
    """Drops b"drop"; a batch holding b"poison" is poison, one holding b"fatal" fails the pipeline."""

    def transform(self, batch):
        values = [m.value() for m in batch]
        if b"poison" in values:
            raise PoisonMessageError("poison")
        if b"fatal" in values:
            raise FatalError("fatal")
        return [m for m in batch if m.value() != b"drop"]


def test_a_batch_that_failed_during_a_steps_isolation_leaves_nothing_to_subtract_from_the_next_batchs_drops():
    pipeline = _pipeline(Picky({}), Collector(), on_error="skip")
    with pytest.raises(FatalError):  # the poison half was skipped, then the other half failed the batch
        pipeline.deliver([Record("t", 0, 0, b"poison"), Record("t", 0, 1, b"fatal")])
    assert pipeline.stats["s0"]["skipped"] == 1
    pipeline.deliver([Record("t", 0, n, v) for n, v in enumerate((b"ok", b"drop", b"drop"), start=2)])
    assert pipeline.stats["s0"]["dropped"] == 2
