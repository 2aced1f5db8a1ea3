"""schema/logs.py: one JSON object per line with the documented fields, the text format for a terminal."""
from __future__ import annotations

import io
import json
import logging

from schema import logs


def _capture(fmt: str, **kwargs) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logs.setup_logging("worker", fmt=fmt, stream=stream, **kwargs)
    return stream, handler


def test_json_lines_carry_ts_level_logger_event_and_the_process_context():
    stream, handler = _capture("json", static={"consumer_id": "c-1", "replica": 0, "generation": 3})
    try:
        logging.getLogger("kcm.worker").warning("HeartbeatFailed: %s", "timeout")
        token = logs.request_id.set("req-42")
        logging.getLogger("kcm.api").info("served", extra={"replica": 2})
        logs.request_id.reset(token)
    finally:
        logging.getLogger().removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "WARNING" and first["logger"] == "kcm.worker"
    assert first["event"] == "HeartbeatFailed: timeout" and first["ts"].endswith("+00:00")
    assert (first["consumer_id"], first["replica"], first["generation"]) == ("c-1", 0, 3)
    assert first["process"] == "worker" and isinstance(first["pid"], int) and "request_id" not in first
    assert second["request_id"] == "req-42" and second["replica"] == 2  # a call's extra wins over the static


def test_gunicorn_access_lines_become_fields_without_the_query_string():
    stream, handler = _capture("json")
    try:
        atoms = {"h": "127.0.0.1", "m": "GET", "U": "/metrics", "s": "200", "B": "512", "L": "0.003",
                 "{x-request-id}o": "abc", "q": "token=secret"}
        logging.getLogger("gunicorn.access").info("%(h)s %(m)s %(U)s", atoms)
    finally:
        logging.getLogger().removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert (line["method"], line["path"], line["status"], line["request_id"]) == ("GET", "/metrics", "200", "abc")
    assert "secret" not in stream.getvalue()


def test_the_text_format_is_one_readable_line():
    stream, handler = _capture("text", static={"consumer_id": "c-1"})
    try:
        logging.getLogger("kcm.lag").info("LagMonitorStopped")
    finally:
        logging.getLogger().removeHandler(handler)
    line = stream.getvalue().strip()
    assert " INFO worker pid=" in line and line.endswith("consumer_id=c-1 LagMonitorStopped")
