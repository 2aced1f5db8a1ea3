"""database_sync's two write paths against the real PostgreSQL: COPY straight into the target, and the
temp-table ``INSERT ... ON CONFLICT DO NOTHING`` it falls back to when a batch meets rows already there.
Also the text encoding both paths share (COPY's text format, converted by PostgreSQL's input functions)."""
from __future__ import annotations

import logging

from processors.base import Record
from processors.pipeline import Pipeline
from schema.spec import ProcessorSpec

FAST = {"max_retries": 0, "retry_backoff": 0.01, "retry_backoff_max": 0.05}


def _pipeline(context, table, on_error="retry", **config):
    spec = ProcessorSpec(id="db-p", processor_type="database_sync",
                         config={"table": table, "create_table": True, **FAST, **config}, on_error=on_error)
    pipeline = Pipeline.build([spec], consumer_id="c-paths", context=context)
    pipeline.open()
    return pipeline, pipeline.stages[0][1]


def _records(offsets, partition=0):
    return [Record("t", partition, i, b"v%d" % i) for i in offsets]


def _offsets(pg_conn, table):
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT partition, "offset" FROM "{table}" ORDER BY 1, 2')
        return cur.fetchall()


def test_redelivery_falls_back_to_on_conflict_and_an_all_new_batch_returns_to_copy(pg_context, pg_conn, sync_table,
                                                                                 caplog):
    pipeline, processor = _pipeline(pg_context, sync_table)
    pipeline.deliver(_records(range(0, 100)))
    assert processor._direct  # first batch: straight COPY
    with caplog.at_level(logging.INFO, logger="processors.database_sync"):
        pipeline.deliver(_records(range(50, 150)))  # half of it was written before a "crash"
    assert "redelivered rows" in caplog.text
    assert not processor._direct  # 50 of 100 were new: stay on the conflict-safe path
    assert _offsets(pg_conn, sync_table) == [(0, i) for i in range(150)]
    pipeline.deliver(_records(range(150, 250)))  # all new: back to COPY for the next one
    assert processor._direct
    pipeline.deliver(_records(range(250, 300)))
    pipeline.deliver(_records(range(0, 300)))  # everything again: a no-op
    pipeline.close()
    assert _offsets(pg_conn, sync_table) == [(0, i) for i in range(300)]


def test_exactly_once_offsets_are_written_on_both_paths(pg_context, pg_conn, sync_table):
    pipeline, _processor = _pipeline(pg_context, sync_table, exactly_once=True)
    pipeline.deliver(_records(range(0, 10), partition=1))
    pipeline.deliver(_records(range(5, 20), partition=1))  # fallback path
    assert pipeline.committed_offsets([("t", 1)]) == {("t", 1): 20}
    pipeline.close()
    assert len(_offsets(pg_conn, sync_table)) == 20


def test_text_values_round_trip_exactly_through_copy_escaping(pg_context, pg_conn, sync_table):
    values = [b"tab\there", b"new\nline", b"cr\rreturn", b"back\\slash", b"\\N", b"", "caf\u00e9 \u2603".encode(),
              b"\\\\x41", b"end\\"]
    pipeline, _processor = _pipeline(pg_context, sync_table, value_format="text")
    batch = [Record("t", 0, i, v, key_=b"k\t\n\\", headers_=(("h\\", b"a\"b\n"),),
                    timestamp_=(1, 1_700_000_000_123)) for i, v in enumerate(values)]
    pipeline.deliver(batch)
    pipeline.deliver(batch[:3] + [Record("t", 0, len(values), None)])  # fallback path, and a NULL value
    pipeline.close()
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT value, key, headers, "timestamp" = to_timestamp(1700000000.123) FROM "{sync_table}" '
                    'ORDER BY "offset"')
        rows = cur.fetchall()
    assert [r[0] for r in rows] == [v.decode() for v in values] + [None]
    assert all(bytes(r[1]) == b"k\t\n\\" and r[2] == [{"key": "h\\", "value": "a\"b\n"}] and r[3] for r in rows[:-1])


def test_json_with_whitespace_and_bytea_with_any_byte_round_trip(pg_context, pg_conn, sync_table):
    pipeline, _processor = _pipeline(pg_context, sync_table, value_format="json")
    pipeline.deliver([Record("t", 0, 0, b'{\n\t"a": "x\\ty",\r\n "b": [1, 2]}')])
    pipeline.close()
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT value FROM "{sync_table}"')
        assert cur.fetchall() == [({"a": "x\ty", "b": [1, 2]},)]
        cur.execute(f'DROP TABLE "{sync_table}"')

    every_byte = bytes(range(256))
    pipeline, _processor = _pipeline(pg_context, sync_table, value_format="bytea")
    pipeline.deliver([Record("t", 0, 0, every_byte, timestamp_=(0, 0))])
    pipeline.close()
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT value, "timestamp" FROM "{sync_table}"')
        (value, timestamp), = cur.fetchall()
    assert bytes(value) == every_byte and timestamp is None  # no timestamp type: NULL, not the epoch


def test_invalid_utf8_and_nul_in_text_are_poison_messages_isolated_by_skip(pg_context, pg_conn, sync_table):
    pipeline, _processor = _pipeline(pg_context, sync_table, on_error="skip", value_format="text")
    batch = _records(range(8))
    batch[2] = Record("t", 0, 2, b"\xff\xfe not utf-8")
    batch[5] = Record("t", 0, 5, b"nul\x00byte")
    pipeline.deliver(batch)
    pipeline.close()
    assert [o for _p, o in _offsets(pg_conn, sync_table)] == [0, 1, 3, 4, 6, 7]
    assert pipeline.stats["db-p"]["skipped"] == 2
