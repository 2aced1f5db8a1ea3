"""``file_sink``: appends one line per message to a file under ``KCM_FILE_SINK_ROOT``.

One ``write`` per batch (the batch is joined in memory first), then fsync by policy. ``raw`` writes the
values as they are (a value containing a newline spans lines: use ``json`` for arbitrary payloads); ``json``
writes an envelope per message with the value as text when it is UTF-8, else base64.

Torn lines: a worker killed (``kill -9``, OOM, power loss) in the middle of a batch's write leaves a last line
without its newline. Its offsets were never stored, so the batch is delivered again; before appending, ``open``
cuts the file back to its last complete line, and a write that fails half way is cut back to where it began. An
exclusive ``flock`` around both keeps replicas that share one file from cutting each other's lines.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime

from marshmallow import RAISE, Schema, ValidationError, fields, validate
from marshmallow.experimental.context import Context

from processors.base import BaseProcessor, FatalError, RetriableError
from processors.checks import Check
from processors.encoding import headers_json, text_or_b64
from processors.sink_paths import PathNotAllowed, confine

log = logging.getLogger(__name__)
_TAIL_CHUNK = 64 * 1024
MIN_FREE_BYTES = 64 * 1024 * 1024  # validate refuses a file system with less room than this
# a full disk, a quota or an I/O hiccup may pass: retried (never FATAL); a bad path, permissions or a planted
# symlink will not. No message can make a write fail by its content, so file_sink raises no PoisonMessageError.
_TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR, errno.ENOMEM,
                               errno.EMFILE, errno.ENFILE, errno.EFBIG})


def _validate_path(value: str) -> None:
    # the API validates with its settings in marshmallow's Context; elsewhere open() is the check
    settings = Context.get({}).get("settings")
    if settings is None:
        return
    try:
        confine(value, settings.file_sink_root)
    except PathNotAllowed as exc:
        raise ValidationError(str(exc)) from exc


class FileSinkConfig(Schema):
    class Meta:
        unknown = RAISE

    file_path = fields.String(required=True, validate=_validate_path, metadata={
        "description": "file to append to, relative to KCM_FILE_SINK_ROOT (or absolute inside it); "
                       "'path' is accepted as an alias and stored as file_path"})
    format = fields.String(load_default="raw", validate=validate.OneOf(["raw", "json"]), metadata={
        "description": "raw: the value per line; json: an envelope with topic, partition, offset, ..."})
    fsync_interval_ms = fields.Integer(load_default=0, validate=validate.Range(min=0), metadata={
        "description": "0: fsync every batch (durable); N: fsync at most every N ms (faster, an OS crash "
                       "can lose up to N ms of acknowledged lines)"})
    rotate_bytes = fields.Integer(load_default=0, validate=validate.Range(min=0), metadata={
        "description": "rotate when the file reaches this size (0: never)"})
    rotate_seconds = fields.Integer(load_default=0, validate=validate.Range(min=0), metadata={
        "description": "rotate when the file is this old (0: never)"})


def _envelope(m) -> bytes:
    value = m.value()
    key = m.key()
    entry = {"topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
             "timestamp": m.timestamp()[1] if m.timestamp()[0] else None}
    entry.update(text_or_b64("key", key))
    entry["headers"] = headers_json(m.headers())
    entry.update(text_or_b64("value", value))
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode()


class FileSinkProcessor(BaseProcessor):
    ConfigSchema = FileSinkConfig
    description = "Appends one line per message (raw value or JSON envelope) to a file under KCM_FILE_SINK_ROOT"

    _fd: int | None = None

    @classmethod
    def canonical_config(cls, raw: dict) -> dict:
        """``path`` (the older spelling) is stored as ``file_path``, the documented key."""
        config = dict(raw)
        if "path" in config:
            if "file_path" in config:
                raise ValidationError({"path": ["Give file_path or its alias path, not both."]})
            config["file_path"] = config.pop("path")
        return config

    @classmethod
    def check(cls, config: dict, context) -> list[Check]:
        """The file's directory (or its nearest existing parent, created at open) takes a file, and has room."""
        name = f"file_sink {config['file_path']}"
        try:
            path = confine(config["file_path"], context.settings.file_sink_root)
        except PathNotAllowed as exc:
            return [Check(name, False, str(exc))]
        directory = os.path.dirname(path)
        while not os.path.isdir(directory) and directory != "/":
            if os.path.lexists(directory):
                return [Check(name, False, f"{directory} exists but is not a directory, so the file cannot be "
                                           "created (check KCM_FILE_SINK_ROOT).")]
            directory = os.path.dirname(directory)
        try:  # a real write: permission bits say nothing to root or on a read-only mount
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as exc:
            return [Check(name, False, f"Cannot create files in {directory}: {exc.strerror}.")]
        free = shutil.disk_usage(directory).free
        if free < MIN_FREE_BYTES:
            return [Check(name, False, f"Only {free // 2**20} MiB free under {directory}.")]
        return [Check(name, True, f"{directory} is writable; {free / 2**30:.1f} GiB free.")]

    def open(self) -> None:
        try:
            self.path = confine(self.config["file_path"], self.context.settings.file_sink_root)
        except PathNotAllowed as exc:
            raise FatalError(f"file_sink path rejected at open: {exc}") from exc
        self._pending: list[bytes] = []
        self._last_fsync = time.monotonic()
        try:
            self._open_file()
        except RetriableError as exc:  # e.g. a full disk: the first batch's flush opens it again (retried)
            log.warning("file_sink %s: cannot open the file yet, will retry: %s", self.processor_id, exc)

    def _open_file(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            # O_NOFOLLOW: a symlink planted after the check above is refused, not followed
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
        except OSError as exc:
            if exc.errno in _TRANSIENT_ERRNOS:
                raise RetriableError(f"file_sink cannot open {self.config['file_path']}: {exc.strerror}") from exc
            raise FatalError(f"file_sink cannot open {self.config['file_path']}: {exc.strerror}") from exc
        self._opened_at = time.time()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._cut_torn_tail()
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError as exc:
            os.close(self._fd)
            self._fd = None
            raise RetriableError(f"file_sink cannot repair the end of {self.config['file_path']}: {exc.strerror}") from exc

    def _cut_torn_tail(self) -> None:
        """Truncate a last line left without its newline by an interrupted write (see the module docstring)."""
        size = os.fstat(self._fd).st_size
        if not size or os.pread(self._fd, 1, size - 1) == b"\n":
            return
        end = size
        keep = 0
        while end > 0:
            start = max(0, end - _TAIL_CHUNK)
            newline = os.pread(self._fd, end - start, start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        os.ftruncate(self._fd, keep)
        os.fsync(self._fd)
        log.warning("file_sink_torn_line_cut path=%s bytes=%d (an interrupted write; the batch is redelivered)",
                    self.config["file_path"], size - keep)

    def process(self, batch) -> None:
        if not batch:
            return
        if self.config["format"] == "raw":
            self._pending.append(b"\n".join([m.value() or b"" for m in batch]) + b"\n")
        else:
            self._pending.append(b"\n".join([_envelope(m) for m in batch]) + b"\n")

    def flush(self) -> None:
        if self._fd is None:
            self._open_file()
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._append(data)
        self._sync()
        self._maybe_rotate()

    def _append(self, data: bytes) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise RetriableError(f"file_sink cannot lock {self.config['file_path']}: {exc.strerror}") from exc
        try:
            began = os.fstat(self._fd).st_size
            try:
                view = memoryview(data)
                while view:  # os.write may write less than asked (signals, a full disk): finish or undo
                    view = view[os.write(self._fd, view):]
            except OSError as exc:
                try:
                    os.ftruncate(self._fd, began)  # no half batch left for the retry to append after
                except OSError:
                    pass  # the next open cuts the torn line
                raise RetriableError(f"file_sink write failed: {exc.strerror}") from exc
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _sync(self, force: bool = False) -> None:
        interval = self.config["fsync_interval_ms"] / 1000
        now = time.monotonic()
        if force or not interval or now - self._last_fsync >= interval:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise RetriableError(f"file_sink fsync failed: {exc.strerror}") from exc
            self._last_fsync = now

    def _maybe_rotate(self) -> None:
        limit_bytes, limit_seconds = self.config["rotate_bytes"], self.config["rotate_seconds"]
        too_big = limit_bytes and os.fstat(self._fd).st_size >= limit_bytes
        too_old = limit_seconds and time.time() - self._opened_at >= limit_seconds
        if not (too_big or too_old):
            return
        self._sync(force=True)
        os.close(self._fd)
        self._fd = None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        os.rename(self.path, f"{self.path}.{stamp}")
        self._open_file()

    def discard(self) -> None:
        self._pending = []

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None
