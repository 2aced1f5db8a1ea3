"""``redis_sink``'s stream-mode marks read and changed from outside a worker: what GET /consumers/{id}/offsets/
shows and what a reset or a delete of the offsets sets (``BaseProcessor.stored_offsets`` and
``reset_stored_offsets``, processors/base.py).

A mark is the last offset the append script wrote to a stream for one (consumer, processor, topic, partition):
a field ``schema.keys.redis_sink_offset_field`` of the hash ``schema.keys.redis_sink_offsets_key(stream)``. The
script appends a message only when its offset is above the mark, so the next offset it writes is mark + 1 and a
reset to offset N sets the mark to N - 1. The streams are the ones the processor's template gives for the
topic: one name when the template names only ``{topic}`` (or nothing), else every offsets hash whose stream
matches it (``SCAN``; ``{partition}`` and ``{key}`` match anything, and only this processor's fields count).
"""
from __future__ import annotations

from dataclasses import dataclass

from schema import keys

GLOB_SPECIAL = frozenset(b"*?[]\\")
SCAN_COUNT = 1000


@dataclass(frozen=True, slots=True)
class Mark:
    hash_key: bytes
    field: bytes
    partition: int
    last_offset: int  # the last offset appended; -1: none


def stream_names(template, topic: str) -> tuple[bytes, bool]:
    """The template over ``topic``: the one stream name (True), or a glob of every name it can give (False)."""
    exact = all(name in (None, "topic") for _, name in template.parts)
    out = []
    for literal, name in template.parts:
        out.append(literal if exact else _escaped(literal))
        if name == "topic":
            out.append(topic.encode() if exact else _escaped(topic.encode()))
        elif name is not None:  # {partition}, {key}
            out.append(b"*")
    return b"".join(out), exact


def _escaped(text: bytes) -> bytes:
    return b"".join(b"\\" + bytes([c]) if c in GLOB_SPECIAL else bytes([c]) for c in text)


def read_marks(client, template, consumer_id: str, processor_id: str, topic: str) -> list[Mark]:
    """Every mark of this processor for ``topic`` in the target Redis."""
    name, exact = stream_names(template, topic)
    if exact:
        hashes = [keys.redis_sink_offsets_key(name)]
    else:
        hashes = client.scan_iter(match=keys.redis_sink_offsets_key(name), count=SCAN_COUNT, _type="hash")
    marks = []
    for hash_key in hashes:
        for field, value in client.hgetall(hash_key).items():
            partition = _partition_of(field, consumer_id, processor_id, topic)
            if partition is None:
                continue
            try:
                marks.append(Mark(hash_key, field, partition, int(value)))
            except ValueError:  # not written by the append script: nothing it would compare against
                continue
    return marks


def _partition_of(field: bytes, consumer_id: str, processor_id: str, topic: str) -> int | None:
    """The partition of a field of this processor for ``topic`` (the field formatted back must match), or None."""
    text = field.decode("utf-8", "replace")
    tail = text.rpartition(":")[2]
    if not (tail.isascii() and tail.isdigit()):
        return None
    partition = int(tail)
    return partition if text == keys.redis_sink_offset_field(consumer_id, processor_id, topic, partition) else None


def next_offsets(marks: list[Mark]) -> dict[int, int]:
    """``{partition: next offset the script would append}``, the highest over the streams of a partition."""
    out: dict[int, int] = {}
    for mark in marks:
        out[mark.partition] = max(out.get(mark.partition, 0), mark.last_offset + 1)
    return out


def write_marks(client, marks: list[Mark], offsets: dict[int, int] | None) -> None:
    """Set each mark of a partition in ``offsets`` to its next offset - 1 (back or forward), or delete every mark
    (None), in one ``MULTI``/``EXEC``. A partition without a mark has none to move: the group's commit decides."""
    moved = [mark for mark in marks if offsets is None or mark.partition in offsets]
    if not moved:
        return
    pipe = client.pipeline(transaction=True)
    for mark in moved:
        if offsets is None:
            pipe.hdel(mark.hash_key, mark.field)
        else:
            pipe.hset(mark.hash_key, mark.field, int(offsets[mark.partition]) - 1)
    pipe.execute()
