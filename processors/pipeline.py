"""A consumer's processors in their configured order, as the worker drives them: one batch at a time.

``deliver(batch)`` returns only when every processor has durably accepted the batch; only then may the
worker store the batch's offsets. Any exception leaves the offsets where they were.
"""
from __future__ import annotations

import logging

from marshmallow import ValidationError

from processors import registry
from processors.base import BaseProcessor, FatalError
from schema.spec import ProcessorSpec

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(self, stages: list[tuple[ProcessorSpec, BaseProcessor]]):
        self.stages = stages

    @classmethod
    def build(cls, specs: tuple[ProcessorSpec, ...] | list[ProcessorSpec], *, consumer_id: str,
              context=None) -> Pipeline:
        """Load and configure each processor; a bad type or config is a FatalError (EX_CONFIG)."""
        stages = []
        for spec in specs:
            try:
                processor_cls = registry.load(spec.processor_type)
                config = processor_cls.validate_config(spec.config)
            except (registry.UnknownProcessorType, registry.ProcessorLoadError) as exc:
                raise FatalError(str(exc)) from exc
            except ValidationError as exc:
                raise FatalError(f"processor {spec.id} ({spec.processor_type}) config invalid: {exc.messages}") from exc
            stages.append((spec, processor_cls(config, consumer_id=consumer_id, processor_id=spec.id,
                                               context=context)))
        return cls(stages)

    def open(self) -> None:
        for _spec, processor in self.stages:
            processor.open()

    def deliver(self, batch) -> None:
        for _spec, processor in self.stages:
            processor.process(batch)
            processor.flush()

    def committed_offsets(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Where to resume per partition when a processor keeps its own offsets (the smallest wins)."""
        result: dict[tuple[str, int], int] = {}
        for _spec, processor in self.stages:
            for tp, offset in processor.committed_offsets(partitions).items():
                result[tp] = min(offset, result.get(tp, offset))
        return result

    def close(self) -> None:
        for spec, processor in self.stages:
            try:
                processor.close()
            except Exception:  # close must not hide the reason we are closing
                log.exception("processor %s (%s) failed to close", spec.id, spec.processor_type)
