"""One lag sample of every consumer: Kafka's offsets per cluster, lag in messages and seconds, the verdict."""
from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping

from schema import kafka_offsets
from schema.health import ConsumerJudgement, PartitionSample, Sample, Thresholds, judge_consumer, since
from schema.settings import Settings
from supervisor.lag.alerts import AlertSender, ConsumerFacts
from supervisor.lag.kafka import Cluster, ClusterOffsets, ClusterUnavailable
from supervisor.lag.store import LagStore, ReplicaView
from supervisor.lag.throughput import Snapshot, ThroughputTracker, throughput_document
from supervisor.lag.watched import Watched, load_watched

log = logging.getLogger("kcm.lag")


def thresholds_from(settings: Settings) -> Thresholds:
    return Thresholds(window=settings.lag_window, warn_seconds=settings.lag_warn_seconds,
                      err_seconds=settings.lag_err_seconds, error_rate_warn=settings.health_error_rate_warn)


def cluster_config(watched: Watched, settings: Settings, environ: Mapping[str, str]) -> dict:
    """librdkafka settings for the consumer's cluster, through the rules a worker applies at start
    (schema/kafka_offsets.py). Raises ClusterUnavailable with a message that names the rule, never a value."""
    return kafka_offsets.client_config(watched.bootstrap_servers, watched.security, settings, environ)


_start_offset = kafka_offsets.start_offset  # the first offset the group has not consumed


class LagMonitor:
    def __init__(self, settings: Settings, session_factory, client, *, clock: Callable[[], float] = time.time,
                 environ: Mapping[str, str] | None = None, cluster_factory=Cluster):
        self.settings = settings
        self.session_factory = session_factory
        self.store = LagStore(client, interval=settings.lag_interval, window=settings.lag_window)
        self.thresholds = thresholds_from(settings)
        self.clock = clock
        self.environ = os.environ if environ is None else environ
        self.cluster_factory = cluster_factory
        self.clusters: dict[tuple[str, str], Cluster] = {}
        self.known: set[str] = set()
        self.throughput = ThroughputTracker()
        # alerts only when a webhook is configured (the rq worker reads the URL; __main__ checks it at start)
        self.alerts = AlertSender(client, settings.alert_retry_intervals) if settings.alert_webhook_url else None

    def sample_once(self) -> int:
        """Sample every consumer once; returns how many were watched."""
        started = time.monotonic()
        watched = load_watched(self.session_factory)
        ids = [w.consumer_id for w in watched]
        history = self.store.read(ids)
        views = self.store.replica_views({w.consumer_id: w.replicas for w in watched})
        counted_at = self.clock()  # when the heartbeat counters were read
        rates = {w.consumer_id: self.throughput.observe(w.consumer_id, Snapshot(
            counted_at, views[w.consumer_id].counters)) for w in watched}
        by_cluster: dict[tuple[str, str], list[Watched]] = defaultdict(list)
        for w in watched:
            by_cluster[w.cluster_key].append(w)
        results = []
        for key, members in by_cluster.items():
            offsets, unavailable, timestamps = self._sample_cluster(key, members)
            now = self.clock()
            for w in members:
                rate = rates[w.consumer_id]
                results.append((*self._evaluate(w, offsets, unavailable, timestamps, history[w.consumer_id],
                                                views[w.consumer_id], now),
                                throughput_document(rate) if rate is not None else None))
        for key in set(self.clusters) - set(by_cluster):
            self.clusters.pop(key).close()
        self.store.write(results)
        if self.alerts is not None:
            by_id = {w.consumer_id: w for w in watched}
            self.alerts.sample([ConsumerFacts(cid, by_id[cid].topic, by_id[cid].group, health["verdict"],
                                              health["reason"], views[cid].fatal)
                                for cid, _sample, _lag, health, _rate in results], self.clock())
        gone = self.known - set(ids)
        self.store.forget(gone)
        self.throughput.forget(gone)
        if self.alerts is not None:
            self.alerts.forget(gone)
        self.known = set(ids)
        self.store.beat(len(watched), time.monotonic() - started)
        return len(watched)

    def _sample_cluster(self, key, members: list[Watched]):
        try:
            cluster = self.clusters.get(key)
            if cluster is None:
                cluster = self.clusters[key] = self.cluster_factory(
                    cluster_config(members[0], self.settings, self.environ))
            groups: dict[str, set[str]] = defaultdict(set)
            for w in members:
                groups[w.group].add(w.topic)
            offsets = cluster.offsets(dict(groups))
        except ClusterUnavailable as exc:
            log.warning("LagSampleFailed brokers=%s: %s", members[0].bootstrap_servers, exc)
            self.clusters.pop(key, None)  # a fresh client next time (the credentials may have been fixed)
            return None, str(exc), {}
        wanted = set()
        for w in members:
            for p in offsets.partitions.get(w.topic, ()):
                marks = offsets.watermarks[(w.topic, p)]
                start = _start_offset(offsets.committed.get((w.group, w.topic, p)), marks.low, marks.high,
                                      w.starts_from_beginning)
                if start < marks.high:
                    wanted.add((w.topic, p, start))
        return offsets, None, cluster.reader.timestamps(wanted)

    def _evaluate(self, w: Watched, offsets: ClusterOffsets | None, unavailable: str | None, timestamps,
                  history, view: ReplicaView, now: float):
        samples, previous = history
        held = view.held
        if unavailable is None and w.group in offsets.group_errors:
            unavailable = offsets.group_errors[w.group]
        sample = None
        if unavailable is None:
            partitions = {}
            for p in offsets.partitions.get(w.topic, ()):
                marks = offsets.watermarks[(w.topic, p)]
                committed = offsets.committed.get((w.group, w.topic, p))
                start = _start_offset(committed, marks.low, marks.high, w.starts_from_beginning)
                lag = marks.high - start
                oldest = timestamps.get((w.topic, p, start)) if lag else None
                seconds = 0.0 if lag == 0 else (max(now - oldest, 0.0) if oldest is not None else None)
                partitions[p] = PartitionSample(committed, marks.high, lag, seconds)
            sample = Sample(at=now, partitions=partitions, errors=view.processor_errors())
            samples = [*samples, sample][-self.thresholds.window:]
        held_partitions = [int(entry.rsplit(":", 1)[1]) for entry in held
                           if entry.rsplit(":", 1)[0] == w.topic and entry.rsplit(":", 1)[1].isdigit()]
        judgement = judge_consumer(samples, self.thresholds, desired_running=w.running, replica_states=view.states,
                                   held_partitions=held_partitions, unavailable=unavailable,
                                   failed_starts=view.failed_starts, paused=w.paused)
        health = health_document(judgement, since(previous, judgement.verdict, now), now)
        return w.consumer_id, sample, lag_document(sample, judgement) if sample is not None else None, health


def lag_document(sample: Sample, judgement: ConsumerJudgement) -> dict:
    parts = sample.partitions
    seconds = [s.lag_seconds for s in parts.values() if s.lag_seconds is not None]
    return {
        "sampled_at": round(sample.at, 3),
        "total_messages": sum(s.lag_messages for s in parts.values()),
        "max_seconds": round(max(seconds), 3) if seconds else (0.0 if not parts else None),
        "partitions": [{
            "partition": p, "committed": s.committed, "high_watermark": s.high_watermark,
            "lag_messages": s.lag_messages,
            "lag_seconds": None if s.lag_seconds is None else round(s.lag_seconds, 3),
            "verdict": judgement.partitions[p].verdict.value if p in judgement.partitions else None,
        } for p, s in sorted(parts.items())],
    }


def health_document(judgement: ConsumerJudgement, since_at: float, now: float) -> dict:
    return {"verdict": judgement.verdict.value, "reason": judgement.reason, "since": round(since_at, 3),
            "evaluated_at": round(now, 3),
            "partitions": {str(p): {"verdict": j.verdict.value, "reason": j.reason}
                           for p, j in sorted(judgement.partitions.items())}}
