"""``redis_sink``: each message to a Redis stream (``XADD``), a hash or a string, one round trip per batch.

``mode: stream`` appends an entry per message to the stream a template names (``{topic}``, ``{partition}``,
``{key}``), capped by ``maxlen`` (approximate, ``MAXLEN ~``). Every entry carries its Kafka coordinates
(``topic``, ``partition``, ``offset``). Idempotence: the entries of one (stream, partition) are appended by one
Lua script that also keeps the last offset it appended in ``schema.keys.redis_sink_offsets_key(stream)`` (one
field per consumer, processor, topic and partition) and skips every message at or below it, atomically, so a
batch redelivered after a crash or a rebalance adds nothing, even when two workers race on one partition. A
dead-letter replay appends without that check (the message was never written). The offsets API reads, moves and
forgets those marks through ``stored_offsets``/``reset_stored_offsets`` (processors/redis_sink_offsets.py).

``mode: hash`` / ``string`` write the key a template over ``{topic}``, ``{partition}``, ``{offset}`` and
``{key}`` gives, replacing what was there (a redelivery rewrites the same value), all of a batch in one
``MULTI``/``EXEC``; a tombstone (null value) deletes the key, like a compacted topic.

The target is a reference (``${env:KCM_SECRET_...}`` / ``${file:...}``) to a ``redis://``, ``rediss://`` or
``unix://`` URL, resolved through ``schema.secrets``; kcm's own control-plane Redis (``KCM_REDIS_URL``: same
host, port and db) is refused unless ``allow_control_plane: true`` names it explicitly.
"""
from __future__ import annotations

import json
import logging
import string
from contextlib import contextmanager

import redis
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from marshmallow.experimental.context import Context
from redis import exceptions as rx
from redis.connection import parse_url

from processors.base import BaseProcessor, FatalError, PoisonMessageError, ProcessorError, RetriableError
from processors.checks import Check
from processors.encoding import headers_json
from schema import keys, secrets
from schema.secrets import Redactor, SecretPolicy

log = logging.getLogger(__name__)

MODES = ("stream", "hash", "string")
TEMPLATE_FIELDS = {"stream": ("topic", "partition", "key"), "key": ("topic", "partition", "offset", "key")}
URL_SCHEMES = ("redis", "rediss", "unix")
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
CONTROL_PLANE_MESSAGE = ("This is kcm's own control-plane Redis (KCM_REDIS_URL, same host, port and db); write "
                         "to another db or server, or set allow_control_plane: true to name it explicitly.")

# KEYS: stream, offsets hash. ARGV: field ('': untracked), maxlen (0: none), then per message: offset, n, n field/value pairs.
# Checks the type first (a WRONGTYPE before any write); on a failed XADD it records what it appended so far.
APPEND_SCRIPT = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'stream' then
  return redis.error_reply('WRONGTYPE the stream name holds a ' .. kind)
end
local tracked = ARGV[1] ~= ''
local written = tracked and tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '-1') or -1
local last, added, i = written, 0, 3
while i <= #ARGV do
  local offset, n = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if offset > last then
    local args = {'XADD', KEYS[1]}
    if ARGV[2] ~= '0' then args[3] = 'MAXLEN'; args[4] = '~'; args[5] = ARGV[2] end
    args[#args + 1] = '*'
    for j = i + 2, i + 1 + 2 * n do args[#args + 1] = ARGV[j] end
    local reply = redis.pcall(unpack(args))
    if type(reply) == 'table' and reply.err then
      if tracked and last > written then redis.call('HSET', KEYS[2], ARGV[1], last) end
      return reply
    end
    last, added = offset, added + 1
  end
  i = i + 2 + 2 * n
end
if tracked and last > written then redis.call('HSET', KEYS[2], ARGV[1], last) end
return added
"""


class Template:
    """``{name}`` fields from an allowed set, rendered to bytes (the message key goes in as its raw bytes)."""

    def __init__(self, text: str, allowed: tuple[str, ...]):
        self.parts: list[tuple[bytes, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"Not a valid template ({exc}); write a literal brace as '{{{{' or '}}}}'.") from None
        for literal, name, spec, conversion in parsed:
            if name is not None and (name not in allowed or spec or conversion):
                raise ValueError(f"Unknown field {{{name}}}: a template takes only "
                                 f"{', '.join('{' + a + '}' for a in allowed)}, without format specs.")
            self.parts.append((literal.encode(), name))
        if not text:
            raise ValueError("Must not be empty.")
        self.uses_key = any(name == "key" for _, name in self.parts)
        self.static = all(name is None for _, name in self.parts)

    def render(self, m) -> bytes:
        out = []
        for literal, name in self.parts:
            out.append(literal)
            if name == "topic":
                out.append(m.topic().encode())
            elif name == "partition":
                out.append(b"%d" % m.partition())
            elif name == "offset":
                out.append(b"%d" % m.offset())
            elif name == "key":
                key = m.key()
                if key is None:
                    raise PoisonMessageError(f"redis_sink: {m.topic()}/{m.partition()}@{m.offset()} has no key "
                                             "and the template uses {key}")
                out.append(key)
        return b"".join(out)


def _template(allowed: tuple[str, ...]):
    def check(value: str) -> None:
        try:
            Template(value, allowed)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
    return check


def _where(url: str) -> tuple:
    """What makes two Redis URLs the same database: (host or socket path, port, db)."""
    parts = parse_url(url)
    if "path" in parts:
        return ("unix", parts["path"], 0, int(parts.get("db") or 0))
    host = (parts.get("host") or "localhost").lower().strip("[]")
    return ("tcp", "loopback" if host in _LOOPBACK else host, int(parts.get("port") or 6379), int(parts.get("db") or 0))


def check_target_url(url: str, control_plane_url: str, allow_control_plane: bool) -> str | None:
    """Why a resolved target URL is refused (a message without the URL), or None."""
    if url.partition("://")[0].lower() not in URL_SCHEMES:
        return f"The reference must hold a {', '.join(s + '://' for s in URL_SCHEMES)} URL."
    try:
        target = _where(url)
    except (ValueError, TypeError):
        return "The reference does not hold a valid Redis URL."
    try:
        same = target == _where(control_plane_url)
    except (ValueError, TypeError):
        same = False
    if same and not allow_control_plane:
        return CONTROL_PLANE_MESSAGE
    return None


class RedisSinkConfig(Schema):
    class Meta:
        unknown = RAISE

    url = fields.String(required=True, metadata={
        "description": "${env:KCM_SECRET_...} or ${file:/run/secrets/...} holding a redis://, rediss:// or "
                       "unix:// URL (with its password); never kcm's own Redis unless allow_control_plane"})
    mode = fields.String(load_default="stream", validate=validate.OneOf(MODES), metadata={
        "description": "stream: XADD an entry per message; hash: HSET the key's fields; string: SET the value"})
    stream = fields.String(load_default="{topic}", validate=_template(TEMPLATE_FIELDS["stream"]), metadata={
        "description": "mode stream: the stream's name, a template over {topic}, {partition}, {key}"})
    key = fields.String(load_default="{topic}:{key}", validate=_template(TEMPLATE_FIELDS["key"]), metadata={
        "description": "mode hash/string: the key, a template over {topic}, {partition}, {offset}, {key}"})
    maxlen = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1), metadata={
        "description": "mode stream: cap the stream at about this many entries (MAXLEN ~); default: uncapped"})
    ttl_seconds = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1), metadata={
        "description": "mode hash/string: expire each key this long after its last write; default: never"})
    allow_control_plane = fields.Boolean(load_default=False, metadata={
        "description": "write to kcm's own control-plane Redis (KCM_REDIS_URL, same db): refused unless true"})
    socket_timeout = fields.Float(load_default=5.0, validate=validate.Range(min=0.1, max=300), metadata={
        "description": "seconds to wait for a connection and for each reply"})

    @validates_schema(skip_on_field_errors=False)
    def _target(self, data, **kwargs):
        url = data.get("url")
        if url is None:
            return
        settings = Context.get({}).get("settings")
        policy = SecretPolicy.of(settings) if settings is not None else None
        problem = secrets.check(url, policy)
        if problem is not None:
            raise ValidationError({"url": [problem]})
        if settings is None:
            return  # the worker: open() resolves and checks
        try:  # the API can tell only when it can resolve the reference itself; open() checks again
            resolved = secrets.resolve(url, policy)
        except secrets.SecretError:
            return
        problem = check_target_url(resolved, settings.redis_url, data.get("allow_control_plane", False))
        if problem is not None:
            raise ValidationError({"url": [problem]})


def _coordinates(m) -> list:
    """The entry's or hash's fields: the payload and the Kafka coordinates (absent parts left out)."""
    out = [b"topic", m.topic(), b"partition", m.partition(), b"offset", m.offset()]
    kind, timestamp = m.timestamp()
    if kind:
        out += [b"timestamp", timestamp]
    key, value, headers = m.key(), m.value(), m.headers()
    if key is not None:
        out += [b"key", key]
    if value is not None:
        out += [b"value", value]
    if headers:
        out += [b"headers", json.dumps(headers_json(headers), separators=(",", ":"))]
    return out


class RedisSinkProcessor(BaseProcessor):
    ConfigSchema = RedisSinkConfig
    description = ("Writes messages to a Redis stream (XADD, capped, redeliveries skipped) or as hashes/strings "
                   "keyed by a template, one round trip per batch")

    _client: redis.Redis | None = None

    @classmethod
    def check(cls, config: dict, context) -> list[Check]:
        """The target answers PING (and, for one fixed stream name, that key is a stream or absent)."""
        probe = cls(config, context=context)
        name = "redis_sink target"
        try:
            client = probe._connect()
        except FatalError as exc:
            return [Check(name, False, str(exc))]
        try:
            client.ping()
            detail = "Redis answered PING."
            stream = Template(config["stream"], TEMPLATE_FIELDS["stream"])
            if config["mode"] == "stream" and stream.static:
                kind = client.type(stream.render(None)).decode()
                if kind not in ("none", "stream"):
                    return [Check(name, False, f"The stream name {config['stream']!r} holds a {kind}.")]
            return [Check(name, True, detail)]
        except rx.RedisError as exc:
            return [Check(name, False, probe._redact(f"Redis did not answer: {type(exc).__name__}: {exc}"))]
        finally:
            client.close()

    @classmethod
    def stored_offsets(cls, config: dict, context, processor_id: str) -> dict[int, int] | None:
        """Stream mode: per partition of ``context.topic``, the offset after the last one appended (the highest
        over its streams). Hash/string mode keeps none: a redelivery rewrites the same value."""
        if config["mode"] != "stream":
            return None
        from processors.redis_sink_offsets import next_offsets

        with cls._marks(config, context, processor_id) as (_client, marks):
            return next_offsets(marks)

    @classmethod
    def reset_stored_offsets(cls, config: dict, context, processor_id: str, offsets: dict[int, int] | None) -> None:
        """Stream mode: each mark of a partition in ``offsets`` set to offset - 1 (the script appends above it),
        or every mark of the topic deleted (None), in one transaction."""
        if config["mode"] != "stream":
            return
        from processors.redis_sink_offsets import write_marks

        with cls._marks(config, context, processor_id) as (client, marks):
            write_marks(client, marks, offsets)

    @classmethod
    @contextmanager
    def _marks(cls, config: dict, context, processor_id: str):
        """The target client (resolved and checked as ``open`` does) and this processor's marks for the topic;
        a Redis error becomes a ``ProcessorError`` whose text never holds the URL."""
        from processors.redis_sink_offsets import read_marks

        sink = cls(config, consumer_id=context.consumer_id, processor_id=processor_id, context=context)
        sink._template = Template(config["stream"], TEMPLATE_FIELDS["stream"])
        client = sink._connect()
        try:
            yield client, read_marks(client, sink._template, sink.consumer_id, processor_id, context.topic)
        except rx.RedisError as exc:
            raise sink._classify(exc) from None
        finally:
            client.close()

    def open(self) -> None:
        self._stream = Template(self.config["stream"], TEMPLATE_FIELDS["stream"])
        self._key = Template(self.config["key"], TEMPLATE_FIELDS["key"])
        self._template = self._stream if self.config["mode"] == "stream" else self._key
        self._pending: list = []
        self._client = self._connect()
        if self.config["mode"] == "stream":
            self._load_script()

    def _connect(self) -> redis.Redis:
        self._redact = Redactor()
        settings = self.context.settings
        try:
            url = secrets.resolve(self.config["url"], SecretPolicy.of(settings))
        except secrets.SecretError as exc:
            raise FatalError(f"redis_sink url: {exc}") from None
        self._redact.add(self.config["url"], url)
        problem = check_target_url(url, settings.redis_url, self.config["allow_control_plane"])
        if problem is not None:
            raise FatalError(f"redis_sink url {self.config['url']}: {problem}")
        timeout = self.config["socket_timeout"]
        return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                    health_check_interval=30)

    def _load_script(self) -> None:
        try:
            self._sha = self._client.script_load(APPEND_SCRIPT)
        except rx.RedisError as exc:
            error = self._classify(exc)
            if isinstance(error, FatalError):
                raise error from None
            self._sha = None  # Redis is down: the first flush loads it (retried)

    # ------------------------------------------------------------------ batches
    def process(self, batch) -> None:
        if self.config["mode"] == "stream":
            self._pending.append(self._stream_groups(batch))
        else:
            self._pending.append(self._keyed(batch))

    def _stream_groups(self, batch) -> dict:
        """{(stream, topic, partition): [args]}: every partition's messages in offset order, per stream."""
        groups: dict[tuple, list] = {}
        render = self._stream.render
        for m in batch:
            fields_ = _coordinates(m)
            groups.setdefault((render(m), m.topic(), m.partition()), []).extend(
                (m.offset(), len(fields_) // 2, *fields_))
        return groups

    def _keyed(self, batch) -> list:
        render, hashed = self._key.render, self.config["mode"] == "hash"
        return [(render(m), m.value(), _coordinates(m) if hashed else None) for m in batch]

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            if self.config["mode"] == "stream":
                self._append(pending)
            else:
                self._write_keys(pending)
        except rx.RedisError as exc:
            raise self._classify(exc) from None

    def _append(self, pending: list) -> None:
        if self._sha is None:
            self._sha = self._client.script_load(APPEND_SCRIPT)
        maxlen, replay = self.config["maxlen"] or 0, bool(getattr(self.context, "replay", False))
        pipe = self._client.pipeline(transaction=False)
        for groups in pending:
            for (stream, topic, partition), args in groups.items():
                # a dead letter being replayed was never written: appended whatever the offsets say ('')
                field = "" if replay else keys.redis_sink_offset_field(self.consumer_id, self.processor_id, topic,
                                                                       partition)
                pipe.evalsha(self._sha, 2, stream, keys.redis_sink_offsets_key(stream), field, maxlen, *args)
        self._raise_first(pipe.execute(raise_on_error=False))

    def _write_keys(self, pending: list) -> None:
        ttl = self.config["ttl_seconds"]
        pipe = self._client.pipeline(transaction=True)  # a reader never sees a hash half replaced
        for items in pending:
            for key, value, hash_fields in items:
                if value is None:  # a tombstone deletes the key, as compaction would
                    pipe.delete(key)
                elif hash_fields is not None:
                    pipe.delete(key)
                    pipe.hset(key, mapping=dict(zip(hash_fields[::2], hash_fields[1::2], strict=True)))
                    if ttl:
                        pipe.expire(key, ttl)
                else:
                    pipe.set(key, value, ex=ttl)
        self._raise_first(pipe.execute(raise_on_error=False))

    def _raise_first(self, results: list) -> None:
        for result in results:
            if isinstance(result, Exception):
                raise result

    def _classify(self, exc: Exception) -> ProcessorError:
        """Connection trouble may pass; credentials and permissions will not; a key of the wrong type is the
        message's fault when its key names it, the configuration's otherwise."""
        text = self._redact(str(exc).rpartition("caused error: ")[2] or type(exc).__name__)
        what = f"redis_sink: {type(exc).__name__}: {text}"
        if isinstance(exc, (rx.AuthenticationError, rx.AuthorizationError, rx.NoPermissionError)):
            return FatalError(what)
        if isinstance(exc, rx.NoScriptError):  # the server restarted or was flushed: load it again next time
            self._sha = None
            return RetriableError(what)
        if isinstance(exc, rx.ResponseError) and text.startswith("WRONGTYPE"):
            if self._template.uses_key:
                return PoisonMessageError(f"{what} (the key comes from the message key)")
            return FatalError(f"{what} (a key of another type is in the way of {self._template_text()!r})")
        return RetriableError(what)

    def _template_text(self) -> str:
        return self.config["stream"] if self.config["mode"] == "stream" else self.config["key"]

    def discard(self) -> None:
        self._pending = []

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None
