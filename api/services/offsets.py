"""A consumer's offsets: read them (GET /consumers/{id}/offsets/), move them (POST .../offsets/reset/, dry run by
default) and forget them (DELETE .../offsets/).

Kafka is read and changed through schema/kafka_offsets.py, on the consumer's own cluster with its security
resolved as a worker would. A processor that keeps its own offsets (``database_sync`` with ``exactly_once``) is
read and changed through its ``stored_offsets``/``reset_stored_offsets`` hooks (processors/base.py), so the next
start resumes exactly where the change says: the group's commit is changed first, then every processor's store.

A change needs every replica stopped: the consumer's desired state ``stopped`` and no replica live in Redis (read
as GET /consumers/{id}/status/ reads it), under the consumer's row lock so no start slips in; else a 409 naming
the live replicas. Kafka refuses to change the offsets of a group with members (a consumer outside kcm, say):
that is a 409 too. Every call is audited with the offsets before and after.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from confluent_kafka import TopicPartition
from marshmallow import ValidationError
from marshmallow.experimental.context import Context

from api.auth.current import current_actor
from api.auth.principal import Actor
from api.services import audit
from api.services.audit import Action
from api.services.consumers import check_visible, load_consumer
from api.services.errors import Invalid, ServiceError, Unavailable
from processors import registry
from processors.base import BaseStep, ProcessorError
from processors.context import ProcessorContext
from schema import kafka_offsets
from schema.kafka_offsets import FROM_START, GroupActive, KafkaUnavailable, Watermarks
from schema.models import Consumer
from schema.spec import bootstrap_servers_of
from schema.states import DesiredState, ProcessState

# a replica in one of these states may be consuming, or about to
LIVE_STATES = frozenset({ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPING, ProcessState.BACKOFF,
                         ProcessState.WAITING})


# one AdminClient per cluster and credentials in each API process: a new one costs a connection and a metadata
# round trip (~50 ms) on every call; keyed by a digest of the resolved settings, so new credentials get a new one
MAX_CLIENTS = 16
_clients: OrderedDict[str, object] = OrderedDict()
_clients_lock = threading.Lock()


def cached_admin(config: dict):
    key = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    with _clients_lock:
        admin = _clients.get(key)
        if admin is not None:
            _clients.move_to_end(key)
            return admin
    admin = kafka_offsets.admin_client(config)
    with _clients_lock:
        admin = _clients.setdefault(key, admin)
        while len(_clients) > MAX_CLIENTS:
            _clients.popitem(last=False)
    return admin


class OffsetsConflict(ServiceError):
    """The offsets cannot be read or changed in the consumer's present state (409)."""

    status_code = 409


@dataclass
class Store:
    """One processor that keeps its own offsets."""

    processor_id: str
    processor_type: str
    cls: type
    config: dict
    context: ProcessorContext


@dataclass
class Snapshot:
    partitions: list[int]
    committed: dict[int, int | None]
    marks: dict[int, Watermarks]
    stores: list[Store] = field(default_factory=list)
    stored: dict[str, dict[int, int]] = field(default_factory=dict)  # processor id -> partition -> next offset
    every_processor_stores: bool = False  # every sink (steps aside) keeps its own offsets

    def resume(self, partition: int) -> int | None:
        """Where the next start resumes: the sinks' own offsets when every sink keeps one for the partition (the
        worker's rule, processors/pipeline.py), else the group's commit; None: neither."""
        if self.every_processor_stores and all(partition in s for s in self.stored.values()):
            return min(s[partition] for s in self.stored.values())
        return self.committed.get(partition)


def _problem(exc: Exception) -> str:
    # a processor's own error text is written to be shown; anything else by its type only
    return str(exc)[:300] if isinstance(exc, ProcessorError) else type(exc).__name__


class OffsetsService:
    def __init__(self, settings, sessions, status):
        self.settings = settings
        self.sessions = sessions
        self.status = status

    # ------------------------------------------------------------------ the three calls
    def view(self, consumer_id: uuid.UUID, actor: Actor | None = None) -> dict:
        with self.sessions() as session:
            consumer = load_consumer(session, consumer_id)
            check_visible(actor or current_actor(), consumer)
            snapshot = self._read(consumer)
        from_beginning = (consumer.auto_offset_reset or "earliest") in FROM_START
        partitions = []
        for p in snapshot.partitions:
            marks, committed = snapshot.marks[p], snapshot.committed.get(p)
            partitions.append({
                "partition": p, "committed": committed, "low_watermark": marks.low, "high_watermark": marks.high,
                "lag": marks.high - kafka_offsets.start_offset(committed, marks.low, marks.high, from_beginning),
                "processor_offsets": {pid: stored[p] for pid, stored in snapshot.stored.items() if p in stored},
            })
        return {"consumer_id": consumer.id, "topic": consumer.topic, "consumer_group": consumer.consumer_group,
                "auto_offset_reset": consumer.auto_offset_reset or "earliest",
                "total_lag": sum(item["lag"] for item in partitions), "partitions": partitions,
                "exactly_once_processors": [{"id": s.processor_id, "processor_type": s.processor_type}
                                            for s in snapshot.stores]}

    def reset(self, consumer_id: uuid.UUID, request: dict, actor: Actor | None = None) -> dict:
        actor = actor or current_actor()
        dry_run = request["dry_run"]
        failed: dict[str, str] = {}
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)  # no start slips in meanwhile
            check_visible(actor, consumer)
            if not dry_run:
                self._refuse_live(consumer)
            admin = self._admin(consumer)
            snapshot = self._read(consumer, admin)
            chosen = self._chosen(request.get("partitions"), snapshot.partitions, consumer.topic)
            targets = self._targets(request, snapshot, chosen, consumer, admin)
            if not dry_run:
                try:
                    kafka_offsets.alter_committed(admin, consumer.consumer_group,
                                                  {(consumer.topic, p): o for p, o in targets.items()})
                except GroupActive as exc:
                    raise OffsetsConflict(str(exc)) from None
                except KafkaUnavailable as exc:
                    raise Unavailable(f"Kafka: {exc}; nothing was changed") from None
                failed = self._write_stores(snapshot.stores, targets)
            moves = [{"partition": p, "from": snapshot.resume(p), "to": targets[p]} for p in chosen]
            after = {"dry_run": dry_run, **_request_record(request), "offsets": {str(p): targets[p] for p in chosen}}
            if failed:
                after["stored_offsets_not_written"] = failed
            audit.record(session, actor, Action.CONSUMER_OFFSETS_RESET, target_type="consumer",
                         target_id=consumer_id, before={"offsets": {str(p): snapshot.resume(p) for p in chosen}},
                         after=after)
        if failed:  # Kafka's commit moved: the audit row says so; the call is safe to repeat
            raise Unavailable(_partial_message(failed), {"processors": failed})
        return {"dry_run": dry_run, "partitions": moves}

    def forget(self, consumer_id: uuid.UUID, actor: Actor | None = None) -> dict:
        actor = actor or current_actor()
        failed: dict[str, str] = {}
        with self.sessions() as session, session.begin():
            consumer = load_consumer(session, consumer_id, lock=True)
            check_visible(actor, consumer)
            self._refuse_live(consumer)
            admin = self._admin(consumer)
            snapshot = self._read(consumer, admin)
            try:
                topics = kafka_offsets.group_topics(admin, consumer.consumer_group)
                others = sorted(topics - {consumer.topic})
                if others:
                    raise OffsetsConflict(
                        f"group {consumer.consumer_group!r} also holds committed offsets of {', '.join(others)}: "
                        "kcm can only delete a whole group (its Kafka client has no DeleteConsumerGroupOffsets); "
                        "reset this consumer's offsets to earliest or latest instead", {"topics": others})
                if topics:
                    kafka_offsets.delete_group(admin, consumer.consumer_group)
            except GroupActive as exc:
                raise OffsetsConflict(str(exc)) from None
            except KafkaUnavailable as exc:
                raise Unavailable(f"Kafka: {exc}; nothing was changed") from None
            failed = self._write_stores(snapshot.stores, None)
            before = {str(p): snapshot.resume(p) for p in snapshot.partitions}
            after = {"offsets": {str(p): None for p in snapshot.partitions},
                     "auto_offset_reset": consumer.auto_offset_reset or "earliest"}
            if failed:
                after["stored_offsets_not_written"] = failed
            audit.record(session, actor, Action.CONSUMER_OFFSETS_DELETE, target_type="consumer",
                         target_id=consumer_id, before={"offsets": before}, after=after)
        if failed:
            raise Unavailable(_partial_message(failed), {"processors": failed})
        return {"dry_run": False,
                "partitions": [{"partition": p, "from": snapshot.resume(p), "to": None} for p in snapshot.partitions]}

    # ------------------------------------------------------------------ the parts
    def _refuse_live(self, consumer: Consumer) -> None:
        replicas = self.status.status(consumer)["replicas"]
        live = {str(r["replica"]): f"{r['state'].value}" + (f" (pid {r['pid']})" if r.get("pid") else "")
                for r in replicas if r["alive"] or r["state"] in LIVE_STATES}
        wanted = DesiredState(consumer.desired_state)
        if wanted == DesiredState.STOPPED and not live:
            return
        named = ", ".join(f"replica {n}: {state}" for n, state in live.items())
        if wanted != DesiredState.STOPPED:
            raise OffsetsConflict(
                f"consumer {consumer.id} is {wanted.value}" + (f" ({named})" if named else "") +
                "; stop it (POST /consumers/{id}/stop/) and wait until every replica is STOPPED",
                {"replicas": live or {str(n): "to be started" for n in range(consumer.replicas)}})
        raise OffsetsConflict(f"consumer {consumer.id} still has live replicas ({named}); wait until every replica "
                              "is STOPPED", {"replicas": live})

    def _admin(self, consumer: Consumer):
        try:
            config = kafka_offsets.client_config(bootstrap_servers_of(consumer), consumer.security, self.settings,
                                                 check_dns=True)
        except KafkaUnavailable as exc:
            raise Unavailable(f"Kafka: {exc}") from None
        return cached_admin(config)

    def _read(self, consumer: Consumer, admin=None) -> Snapshot:
        admin = admin or self._admin(consumer)
        topic, group = consumer.topic, consumer.consumer_group
        try:
            partitions = kafka_offsets.topic_partitions(admin, [topic]).get(topic)
            if partitions is None:
                raise OffsetsConflict(f"topic {topic!r} does not exist on the consumer's cluster")
            tps = [TopicPartition(topic, p) for p in partitions]
            committed, errors = kafka_offsets.committed_offsets(admin, {group: tps})
            if group in errors:
                raise KafkaUnavailable(errors[group])
            marks = kafka_offsets.watermarks(admin, tps)
        except KafkaUnavailable as exc:
            raise Unavailable(f"Kafka: {exc}") from None
        snapshot = Snapshot(partitions=partitions, committed={p: committed.get((group, topic, p)) for p in partitions},
                            marks={p: marks[(topic, p)] for p in partitions})
        self._read_stores(consumer, snapshot)
        return snapshot

    def _read_stores(self, consumer: Consumer, snapshot: Snapshot) -> None:
        servers = bootstrap_servers_of(consumer)
        keepers = sinks = 0
        for spec in consumer.downstream_processors:
            name = f"processor {spec.id} ({spec.processor_type})"
            try:
                cls = registry.load(spec.processor_type)
                with Context({"settings": self.settings}):
                    config = cls.validate_config(spec.config or {})
            except (LookupError, ImportError, ValidationError) as exc:
                raise OffsetsConflict(f"{name}: cannot tell whether it keeps its own offsets here "
                                      f"({type(exc).__name__}: {str(exc)[:200]})") from None
            if issubclass(cls, BaseStep):  # a step writes nothing: the sinks' offsets decide (processors/pipeline.py)
                continue
            sinks += 1
            context = ProcessorContext(settings=self.settings, consumer_id=str(consumer.id), bootstrap_servers=servers,
                                       security=consumer.security or {}, topic=consumer.topic)
            try:
                stored = cls.stored_offsets(config, context, str(spec.id))
            except Exception as exc:  # noqa: BLE001 - a plugin's failure is a 503 naming it, not a 500
                raise Unavailable(f"{name}: its stored offsets cannot be read: {_problem(exc)}") from None
            if stored is None:
                continue
            keepers += 1
            snapshot.stores.append(Store(str(spec.id), spec.processor_type, cls, config, context))
            snapshot.stored[str(spec.id)] = {int(p): int(o) for p, o in stored.items() if p in snapshot.marks}
        snapshot.every_processor_stores = sinks > 0 and keepers == sinks

    @staticmethod
    def _chosen(requested: list[int] | None, partitions: list[int], topic: str) -> list[int]:
        if not requested:
            return list(partitions)
        unknown = sorted(set(requested) - set(partitions))
        if unknown:
            have = f"0-{max(partitions)}" if partitions == list(range(len(partitions))) else str(partitions)
            message = (f"partition(s) {', '.join(map(str, unknown))} not in topic {topic!r} "
                       f"(its partitions: {have})")
            raise Invalid(message, {"json": {"partitions": [message]}})
        return sorted(requested)

    def _targets(self, request: dict, snapshot: Snapshot, chosen: list[int], consumer: Consumer, admin
                 ) -> dict[int, int]:
        to, marks = request["to"], snapshot.marks
        if to == "earliest":
            raw = {p: marks[p].low for p in chosen}
        elif to == "latest":
            raw = {p: marks[p].high for p in chosen}
        elif to == "offset":
            raw = {p: request["offset"] for p in chosen}
        elif to == "shift":
            from_beginning = (consumer.auto_offset_reset or "earliest") in FROM_START
            raw = {}
            for p in chosen:
                now = snapshot.resume(p)
                base = now if now is not None else kafka_offsets.start_offset(None, marks[p].low, marks[p].high,
                                                                              from_beginning)
                raw[p] = base + request["shift"]
        else:
            raw = self._for_time(request, chosen, consumer.topic, marks, admin)
        return {p: min(max(offset, marks[p].low), marks[p].high) for p, offset in raw.items()}

    @staticmethod
    def _for_time(request: dict, chosen: list[int], topic: str, marks: dict[int, Watermarks], admin
                  ) -> dict[int, int]:
        if "timestamp" in request:
            when = request["timestamp"]
        else:
            when = max(int((time.time() - request["duration"].total_seconds()) * 1000), 0)
        try:
            found = kafka_offsets.offsets_for_time(admin, [TopicPartition(topic, p) for p in chosen], when)
        except KafkaUnavailable as exc:
            raise Unavailable(f"Kafka: {exc}") from None
        # no message that recent: the end of the partition, as kafka-consumer-groups.sh does
        return {p: found[(topic, p)] if found.get((topic, p)) is not None else marks[p].high for p in chosen}

    @staticmethod
    def _write_stores(stores: list[Store], targets: dict[int, int] | None) -> dict[str, str]:
        """Each store set to ``targets`` (None: forgotten); the processors whose store could not be written."""
        failed = {}
        for store in stores:
            try:
                store.cls.reset_stored_offsets(store.config, store.context, store.processor_id,
                                               None if targets is None else dict(targets))
            except Exception as exc:  # noqa: BLE001 - reported per processor; the others are still written
                failed[store.processor_id] = _problem(exc)
        return failed


def _request_record(request: dict) -> dict:
    """The reset request as the audit row keeps it (JSON: a duration in seconds)."""
    record = {name: request[name] for name in ("to", "timestamp", "offset", "shift", "partitions") if name in request}
    if "duration" in request:
        record["duration_seconds"] = request["duration"].total_seconds()
    return record


def _partial_message(failed: dict[str, str]) -> str:
    names = ", ".join(f"{pid} ({problem})" for pid, problem in failed.items())
    return (f"the group's committed offsets were changed, but the stored offsets of processor(s) {names} were not: "
            "the next start would resume where those say; repeat the same call once the store is reachable")
