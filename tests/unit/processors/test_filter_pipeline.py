"""Steps in the pipeline (pure logic): later stages see what a step let through; on_error isolates a step's poison."""
from __future__ import annotations

import pytest

from processors.base import BaseProcessor, BaseStep, FatalError, PoisonMessageError, Record, RetriableError
from processors.filter import FilterStep
from processors.json_transform import JsonTransformStep
from processors.pipeline import Pipeline
from processors.policy import DeliveryPolicy
from schema.spec import ProcessorSpec


class Collector(BaseProcessor):
    """A sink that remembers every flushed message and how many batches it saw."""

    def __init__(self, own_offsets=None):
        super().__init__({})
        self.flushed, self.pending, self.batches, self.own_offsets = [], [], 0, own_offsets

    def process(self, batch):
        self.batches += 1
        self.pending = list(batch)

    def flush(self):
        self.flushed.extend(self.pending)
        self.pending = []

    def committed_offsets(self, partitions):
        return dict(self.own_offsets or {})


def _filter(condition: str) -> FilterStep:
    step = FilterStep(FilterStep.validate_config({"condition": condition}), processor_id="f")
    step.open()
    return step


def _transform(**config) -> JsonTransformStep:
    step = JsonTransformStep(JsonTransformStep.validate_config(config), processor_id="j")
    step.open()
    return step


def _pipeline(*stages, on_error="retry", retries=0):
    specs = [ProcessorSpec(id=f"s{i}", processor_type=type(p).__name__, on_error=on_error) for i, p in enumerate(stages)]
    policies = [DeliveryPolicy(on_error=on_error, max_retries=retries, retry_backoff=0, retry_backoff_max=0)
                for _ in stages]
    return Pipeline(list(zip(specs, stages, strict=True)), policies, consumer_id="c")


def _values(n: int, poison=()):
    return [Record("t", 0, i, b"{oops" if i in poison else b'{"n": %d, "name": "x"}' % i) for i in range(n)]


def test_the_sink_gets_what_the_filter_kept_and_a_fully_dropped_batch_reaches_no_sink():
    sink = Collector()
    pipeline = _pipeline(_filter("value.n >= 5"), sink)
    pipeline.deliver(_values(8))
    assert [m.offset() for m in sink.flushed] == [5, 6, 7]
    pipeline.deliver(_values(5))
    assert sink.batches == 1  # nothing kept: the sink was not called
    assert pipeline.stats["s0"]["batches"] == 2 and pipeline.stats["s1"]["batches"] == 1


def test_steps_run_in_order_each_on_the_output_of_the_one_before():
    sink = Collector()
    pipeline = _pipeline(_transform(rename={"n": "number"}), _filter("value.number < 2"), sink)
    pipeline.deliver(_values(4))
    assert [m.value() for m in sink.flushed] == [b'{"name":"x","number":0}', b'{"name":"x","number":1}']


def test_skip_isolates_the_steps_poison_and_the_rest_reaches_the_sink_in_order():
    sink = Collector()
    pipeline = _pipeline(_transform(drop=["name"]), sink, on_error="skip")
    pipeline.deliver(_values(100, poison={3, 64}))
    assert [m.offset() for m in sink.flushed] == [i for i in range(100) if i not in (3, 64)]
    assert sink.flushed[0].value() == b'{"n":0}'
    assert pipeline.stats["s0"]["skipped"] == 2 and pipeline.stats["s1"]["skipped"] == 0
    assert sink.batches == 1  # the sink got the survivors as one batch


def test_retry_fails_the_batch_on_a_steps_poison_before_any_sink_writes():
    sink = Collector()
    pipeline = _pipeline(_transform(), sink, on_error="retry", retries=3)
    with pytest.raises(PoisonMessageError):
        pipeline.deliver(_values(10, poison={9}))
    assert sink.flushed == [] and pipeline.stats["s0"]["retries"] == 0  # a data error is not retried


class Flaky(BaseStep):
    """A step that fails its first ``failures`` calls (a lookup that times out), then passes everything."""

    def __init__(self, failures):
        super().__init__({})
        self.failures = failures

    def transform(self, batch):
        if self.failures:
            self.failures -= 1
            raise RetriableError("lookup timed out")
        return batch


def test_a_retriable_error_in_a_step_is_retried_like_a_sinks():
    sink = Collector()
    pipeline = _pipeline(Flaky(2), sink, retries=3)
    pipeline.deliver(_values(3))
    assert len(sink.flushed) == 3 and pipeline.stats["s0"]["retries"] == 2


def test_a_sinks_failure_after_a_step_isolates_the_transformed_messages():
    class PickySink(Collector):
        def process(self, batch):
            super().process(batch)
            if any(b'"n":7' in m.value() for m in batch):
                raise PoisonMessageError("refused")

    sink = PickySink()
    pipeline = _pipeline(_transform(drop=["name"]), sink, on_error="skip")
    pipeline.deliver(_values(10))
    assert [m.offset() for m in sink.flushed] == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert pipeline.stats["s1"]["skipped"] == 1 and pipeline.stats["s0"]["skipped"] == 0


def test_offsets_a_sink_keeps_are_not_hidden_by_a_step():
    keeps = Collector(own_offsets={("t", 0): 10})
    assert _pipeline(_filter("value.n > 1"), keeps).committed_offsets([("t", 0)]) == {("t", 0): 10}
    assert _pipeline(_filter("value.n > 1"), keeps, Collector()).committed_offsets([("t", 0)]) == {}


def test_a_step_alone_refuses_a_replay_instead_of_reporting_it_delivered():
    with pytest.raises(FatalError, match="is a step"):
        _transform().process(_values(1))
