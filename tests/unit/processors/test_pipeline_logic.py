"""Pure logic of the pipeline: isolation by halving, offsets reported only when every stage keeps them."""
from __future__ import annotations

from processors.base import BaseProcessor, Record, RetriableError
from processors.pipeline import Pipeline
from processors.policy import DeliveryPolicy, split_config
from schema.spec import ProcessorSpec


class Picky(BaseProcessor):
    """Fails any batch holding an offset in ``bad``; remembers what was flushed and how often it was tried."""

    def __init__(self, bad, own_offsets=None):
        super().__init__({})
        self.bad, self.own_offsets, self.flushed, self.attempts, self.pending = set(bad), own_offsets, [], 0, []

    def process(self, batch):
        self.attempts += 1
        self.pending = [m.offset() for m in batch]
        if self.bad & set(self.pending):
            raise RetriableError("bad offset in batch")

    def flush(self):
        self.flushed.extend(self.pending)

    def committed_offsets(self, partitions):
        return dict(self.own_offsets or {})


def _skip_pipeline(processor):
    spec = ProcessorSpec(id="p", processor_type="picky", on_error="skip")
    return Pipeline([(spec, processor)], [DeliveryPolicy(on_error="skip", max_retries=0)], consumer_id="c")


def test_isolation_delivers_everything_but_the_failing_messages():
    processor = Picky(bad={3, 77})
    pipeline = _skip_pipeline(processor)
    pipeline.deliver([Record("t", 0, i, b"v") for i in range(100)])
    assert sorted(processor.flushed) == [i for i in range(100) if i not in (3, 77)]
    assert pipeline.stats["p"]["skipped"] == 2
    assert processor.attempts < 40  # halving, not one attempt per message


def test_committed_offsets_only_when_every_stage_keeps_its_own():
    keeps = Picky(bad=(), own_offsets={("t", 0): 10, ("t", 1): 5})
    keeps_less = Picky(bad=(), own_offsets={("t", 0): 7})
    kafka_only = Picky(bad=())
    spec = ProcessorSpec(id="a", processor_type="x")
    assert Pipeline([(spec, keeps), (spec, keeps_less)]).committed_offsets([]) == {("t", 0): 7}
    assert Pipeline([(spec, keeps), (spec, kafka_only)]).committed_offsets([]) == {}
    assert Pipeline([(spec, keeps)]).committed_offsets([]) == {("t", 0): 10, ("t", 1): 5}


def test_policy_keys_are_split_from_the_processor_config():
    policy, own = split_config({"path": "x", "max_retries": 3, "retry_timeout": 5})
    assert policy == {"max_retries": 3, "retry_timeout": 5} and own == {"path": "x"}


def test_interrupt_stops_retrying_and_the_batch_fails():
    processor = Picky(bad={0})
    spec = ProcessorSpec(id="p", processor_type="picky")
    pipeline = Pipeline([(spec, processor)], [DeliveryPolicy(max_retries=1000, retry_backoff=0.001,
                                                             retry_backoff_max=0.001)])
    pipeline.interrupt()
    try:
        pipeline.deliver([Record("t", 0, 0, b"v")])
    except RetriableError:
        pass
    else:
        raise AssertionError("an interrupted pipeline must not report the batch delivered")
    assert processor.attempts == 1 and processor.flushed == []
