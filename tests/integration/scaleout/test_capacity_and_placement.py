"""Several supervisors (issue 14): KCM_MAX_WORKERS caps a host, and KCM_SUPERVISOR_LABELS against a consumer's
placement decide where its slot may run, at every 100 ms sample, with real supervisors, workers and file sinks."""
from __future__ import annotations

import re
import uuid

import sqlalchemy as sa

from schema.models import Consumer
from tests.integration.scaleout.conftest import TTL, Producer, Sampler
from tests.integration.scaleout.test_supervisors import _more_samples, _no_twins
from tests.support.kafka import produce, wait_for


class Placed:
    """What a Sampler sees of the cluster, plus which supervisor(s) run each slot's workers at that sample."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.runners: list[dict[str, set[str]]] = []  # per sample: consumer id -> supervisor ids of its workers

    def workers_by_slot(self) -> dict[tuple[str, int], list[int]]:
        sid_of = {str(proc.pid): sid for sid, proc in self.cluster.procs.items()}
        by_slot: dict[tuple[str, int], list[int]] = {}
        runners: dict[str, set[str]] = {}
        for pid, (slot, parent) in self.cluster.worker_pids().items():
            by_slot.setdefault(slot, []).append(pid)
            runners.setdefault(slot[0], set()).add(sid_of[parent])
        self.runners.append(runners)
        return by_slot


def _sample(cluster) -> Placed:
    placed = Placed(cluster)
    cluster.sampler = Sampler(placed)  # the cluster's teardown stops it
    cluster.sampler.start()
    return placed


def _holders(cluster) -> dict[str | None, list[str]]:
    """Supervisor id (None: unassigned) -> the consumers whose slot it holds, for failure messages."""
    held: dict[str | None, list[str]] = {}
    for cid, (holder, _epoch, _state) in sorted(cluster.slots().items()):
        held.setdefault(holder, []).append(cid)
    return held


def test_max_workers_caps_a_supervisor_at_every_sample_and_the_other_runs_the_rest(cluster, topic_factory):
    topic = topic_factory(partitions=1)
    produce(cluster.bootstrap, topic, 8)
    capped, other = cluster.start("cap2", KCM_MAX_WORKERS="2"), cluster.start("free")
    cluster.wait_registered([capped, other])
    placed = _sample(cluster)  # from before the first claim: the cap holds while the slots are being taken
    cluster.create_consumers(topic, 8)
    try:
        cluster.wait_running(timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; slots now {_holders(cluster)}") from None
    _more_samples(cluster)
    cluster.sampler.stop()
    assert cluster.spread() == {capped: 2, other: 6}
    on_capped = [sum(capped in sids for sids in sample.values()) for sample in placed.runners]
    assert max(on_capped) == 2 and len(on_capped) > 20, on_capped
    assert "max_workers=2" in cluster.log(capped)
    _no_twins(cluster)
    cluster.check_sinks(8, duplicates_allowed=False)


def test_placement_pins_moves_and_leaves_unassigned_what_no_supervisor_matches(cluster, client, topic_factory):
    topic = topic_factory(partitions=2)
    zone_a = cluster.start("zone-a", KCM_SUPERVISOR_LABELS="zone=a")
    zone_b = cluster.start("zone-b", KCM_SUPERVISOR_LABELS="zone=b,disk=ssd")
    cluster.wait_registered([zone_a, zone_b])
    placed = _sample(cluster)
    producer = Producer(cluster.bootstrap, topic)
    producer.start()
    pinned = cluster.create_consumers(topic, 2, placement={"zone": "a"})
    nowhere = cluster.create_consumers(topic, 1, placement={"zone": "c"})[0]
    # the pinned ones first, as an operator would create them (claims prefer slots only one supervisor may run;
    # tests/integration/scaleout/test_stranded_slot.py covers the other order)
    cluster.wait_running(timeout=90, cids=pinned)
    free = cluster.create_consumers(topic, 2)
    runnable = pinned + free
    cluster.wait_running(timeout=90, cids=runnable)
    slots = cluster.slots()
    assert all(slots[cid][0] == zone_a for cid in pinned), slots
    assert sorted(slots[cid][0] for cid in free) == sorted([zone_a, zone_b]), slots  # shares 3 and 1

    moved = pinned[1]
    before = client.get(f"/consumers/{moved}/").json
    old_epoch = slots[moved][1]
    patched = client.patch(f"/consumers/{moved}/", json={"placement": {"zone": "b"}})
    assert patched.status_code == 200, patched.json
    assert patched.json["placement"] == {"zone": "b"} and patched.json["generation"] == before["generation"]
    wait_for(lambda: cluster.slots()[moved][0] == zone_b and cluster.running_everywhere(runnable), timeout=60,
             interval=0.1, message=f"{moved} RUNNING on {zone_b} (slots {cluster.slots()})")
    sent_at_move = producer.sent
    state = cluster.state(moved)
    assert cluster.slots()[moved][1] == old_epoch + 1 and state["generation"] == str(before["generation"])
    assert client.get(f"/consumers/{moved}/").json["generation"] == before["generation"]
    # warm: the zone=a supervisor stopped its worker with SIGTERM (exit 0) and only then released the slot
    log_a = cluster.log(zone_a)
    assert re.search(rf"HandoverStarted consumer={moved} replica=0", log_a), log_a[-3000:]
    assert re.search(rf"WorkerExited consumer={moved} replica=0 pid=\d+ returncode=0 ", log_a), log_a[-3000:]
    assert re.search(rf"SlotReleased consumer={moved} replica=0 epoch={old_epoch} handover=True", log_a)
    assert re.findall(r"SlotsClaimed count=(\d+) .*?slots=(\S+)", cluster.log(zone_b))[-1] == (
        "1", f"{moved}/0@{old_epoch + 1}")

    _more_samples(cluster, 30)
    total = producer.stop()
    assert total > sent_at_move  # messages before, during and after the move
    wait_for(lambda: all(len(set(cluster.sink(cid))) >= total for cid in runnable), timeout=90, interval=0.5,
             message=f"every runnable consumer's sink holds all {total} messages")
    cluster.sampler.stop()
    for cid in runnable:  # the handover committed before the zone=b worker started: no line twice, none lost
        lines = cluster.sink(cid)
        assert len(lines) == len(set(lines)) == total, (cid, len(lines), len(set(lines)), total)
    _no_twins(cluster)

    # where each consumer ran, at every sample
    ran = {cid: set().union(*(sample.get(cid, set()) for sample in placed.runners)) for cid in pinned + free + [nowhere]}
    assert ran[pinned[0]] == {zone_a} and ran[moved] == {zone_a, zone_b}, ran
    moved_at = [i for i, sample in enumerate(placed.runners) if zone_b in sample.get(moved, set())]
    assert all(zone_a not in sample.get(moved, set()) for sample in placed.runners[moved_at[0]:])
    assert ran[free[0]] | ran[free[1]] == {zone_a, zone_b} and ran[nowhere] == set(), ran
    assert cluster.slots()[nowhere][0] is None and cluster.sink(nowhere) == []
    status = client.get(f"/consumers/{nowhere}/status/").json
    assert status["state"] != "RUNNING" and status["status"] != "ACTIVE", status
    assert status["replicas"][0]["supervisor_id"] is None and status["replicas"][0]["pid"] is None, status


def test_a_consumer_no_supervisor_may_run_says_why_in_its_status(cluster, client, topic_factory):
    topic = topic_factory(partitions=1)
    sid = cluster.start("zone-a", KCM_SUPERVISOR_LABELS="zone=a")
    cluster.wait_registered([sid])
    nowhere = cluster.create_consumers(topic, 1, placement={"zone": "c"})[0]
    wait_for(lambda: nowhere in cluster.slots(), timeout=30, message="its slot row created by the supervisor")
    seen = []

    def says_why():
        status = client.get(f"/consumers/{nowhere}/status/").json
        replica = status["replicas"][0]
        seen.append(f"status={status['status']} state={status['state']} status_reason={status['status_reason']!r} "
                    f"replica state={replica['state']} reason={replica['reason']!r}")
        words = f"{status['status_reason'] or ''} {replica['reason'] or ''}"
        return cluster.slots()[nowhere][0] is None and "placement" in words and "zone" in words
    try:
        wait_for(says_why, timeout=6 * TTL, interval=0.5, message="the status naming the unmatched placement")
    except AssertionError:
        raise AssertionError(f"the status does not say why the consumer does not run: {seen[-1]}") from None


def test_a_joining_supervisor_is_handed_no_slot_it_may_not_run(cluster, topic_factory):
    topic = topic_factory(partitions=1)
    produce(cluster.bootstrap, topic, 4)
    consumers = cluster.create_consumers(topic, 4)
    pinned = sorted(consumers)[-2:]  # the highest slot keys, which a supervisor over its share hands over first
    with cluster.engine.begin() as conn:
        conn.execute(sa.update(Consumer).where(Consumer.id.in_([uuid.UUID(cid) for cid in pinned]))
                     .values(placement={"zone": "a"}))
    zone_a = cluster.start("zone-a", KCM_SUPERVISOR_LABELS="zone=a")
    cluster.wait_registered([zone_a])
    cluster.wait_running(timeout=60)
    assert cluster.spread() == {zone_a: 4}
    cluster.start_sampler()
    zone_b = cluster.start("zone-b")  # shares: 2 pinned + 1 of the 2 free on zone=a, 1 free on zone-b
    try:
        wait_for(lambda: cluster.spread() == {zone_a: 3, zone_b: 1} and cluster.running_everywhere(), timeout=30,
                 interval=0.2, message="one unpinned slot moved to the joining supervisor, every consumer RUNNING")
    except AssertionError as exc:
        handed = re.findall(r"HandoverStarted consumer=(\S+)", cluster.log(zone_a))
        raise AssertionError(f"{exc}; slots now {_holders(cluster)}, pinned {pinned}, handed over {handed}") from None
    assert all(cluster.slots()[cid][0] == zone_a for cid in pinned)
    _more_samples(cluster)
    _no_twins(cluster)
    cluster.check_sinks(4, duplicates_allowed=False)
