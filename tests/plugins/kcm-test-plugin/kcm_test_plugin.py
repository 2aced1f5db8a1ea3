"""A third-party processor for kcm's tests: records ``topic partition offset value`` lines in a file.

Config: ``path`` (required), ``fail_on`` (a value substring that raises a RetriableError: a poison message),
``fail_open`` (raise a FatalError in open(): a bad-config stand-in), ``delay_ms`` (sleep per batch),
``fail_while_exists`` (a file path: every batch raises a RetriableError while that file exists: a sink that is
down until the test removes the file).
"""
from __future__ import annotations

import os
import time

from marshmallow import Schema, fields

from processors.base import BaseProcessor, FatalError, RetriableError


class CollectorConfig(Schema):
    path = fields.String(required=True, metadata={"description": "file the collected lines go to"})
    fail_on = fields.String(load_default=None, allow_none=True)
    fail_open = fields.Boolean(load_default=False)
    delay_ms = fields.Integer(load_default=0)
    fail_while_exists = fields.String(load_default=None, allow_none=True)


class CollectorProcessor(BaseProcessor):
    ConfigSchema = CollectorConfig
    description = "Test plugin: appends 'topic partition offset value' per message to a file"

    def open(self):
        if self.config["fail_open"]:
            raise FatalError("fail_open is set")
        self._fh = open(self.config["path"], "ab")
        self._pending = []

    def process(self, batch):
        down = self.config["fail_while_exists"]
        if down and os.path.exists(down):
            raise RetriableError(f"sink down while {down} exists")
        fail_on = self.config["fail_on"]
        lines = []
        for m in batch:
            value = m.value() or b""
            if fail_on and fail_on.encode() in value:
                raise RetriableError(f"poison message at {m.topic()}/{m.partition()}@{m.offset()}")
            lines.append(b"%s %d %d %s\n" % (m.topic().encode(), m.partition(), m.offset(), value))
        self._pending.append(b"".join(lines))
        if self.config["delay_ms"]:
            time.sleep(self.config["delay_ms"] / 1000)

    def flush(self):
        if self._pending:
            self._fh.write(b"".join(self._pending))
            self._pending.clear()
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self):
        fh = getattr(self, "_fh", None)
        if fh:
            fh.close()
