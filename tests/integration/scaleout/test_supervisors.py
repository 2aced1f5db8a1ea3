"""Several supervisors share the replica slots (issue 14): balance, kill -9, SIGSTOP fencing, a joining supervisor,
a SIGTERM drain and a PostgreSQL restart, each with real supervisor processes, workers and file sinks."""
from __future__ import annotations

import os
import re
import signal
import time

from tests.integration.runtime.conftest import pid_alive
from tests.integration.scaleout.conftest import TTL, Producer
from tests.support.kafka import produce, wait_for


def _start(cluster, topic: str, *, supervisors: int = 3, consumers: int = 12, batch: int = 12) -> list[str]:
    sids = [cluster.start(f"s{i}") for i in range(supervisors)]
    cluster.wait_registered(sids)
    for start in range(0, consumers, batch):  # batches: 30 workers starting at once would starve 2 cores
        cluster.create_consumers(topic, min(batch, consumers - start))
        cluster.wait_running(timeout=180)
    return sids


def _holding(cluster, sid: str) -> set[str]:
    return {cid for cid, (holder, _e, _s) in cluster.slots().items() if holder == sid}


def _no_twins(cluster) -> None:
    assert cluster.sampler is not None and len(cluster.sampler.samples) > 10
    assert cluster.sampler.twins == [], f"two live workers for one slot: {cluster.sampler.twins[:3]}"


def _more_samples(cluster, count: int = 20) -> None:
    target = len(cluster.sampler.samples) + count
    wait_for(lambda: len(cluster.sampler.samples) >= target, timeout=30, message=f"{count} more samples")


def test_three_supervisors_run_thirty_consumers_ten_each_one_writer_per_state(cluster, topic_factory):
    topic = topic_factory(partitions=1)
    produce(cluster.bootstrap, topic, 30)
    sids = _start(cluster, topic, consumers=30, batch=10)
    spread = cluster.spread()
    assert sorted(spread) == sorted(sids) and all(9 <= spread[sid] <= 11 for sid in sids), spread

    sampler = cluster.start_sampler()
    first = cluster.running_everywhere()
    _more_samples(cluster, 30)
    sampler.stop()
    # exactly 30 workers, one per slot, at every sample: no spinning standby anywhere
    assert all(len(sample) == 30 and all(len(p) == 1 for p in sample.values()) for sample in sampler.samples)
    # one writer per state hash: the slot's holder, the same over the whole run, and each consumer spawned once
    slots = cluster.slots()
    for cid in cluster.consumers:
        state = cluster.state(cid)
        assert state["supervisor"] == first[cid]["supervisor"] == slots[cid][0] and state["epoch"] == str(slots[cid][1])
    spawns = [line for sid in sids for line in cluster.log(sid).splitlines() if "WorkerSpawned" in line]
    assert len(spawns) == 30 and not any("LeaseHeld" in cluster.log(sid) for sid in sids)
    cluster.check_sinks(30, duplicates_allowed=False)


def test_kill_9_one_supervisor_its_slots_run_elsewhere_within_the_ttl_plus_5s(cluster, topic_factory):
    topic = topic_factory(partitions=2)
    sids = _start(cluster, topic)
    producer = Producer(cluster.bootstrap, topic)
    producer.start()
    victim = sids[0]
    orphans = _holding(cluster, victim)
    assert orphans
    victim_workers = [pid for pid, (slot, parent) in cluster.worker_pids().items()
                      if parent == str(cluster.procs[victim].pid)]
    cluster.start_sampler()
    killed_at = time.monotonic()
    os.kill(cluster.procs[victim].pid, signal.SIGKILL)
    cluster.procs[victim].wait(10)
    cluster.wait_running(timeout=TTL + 5, cids=sorted(orphans), not_on=victim)
    took = time.monotonic() - killed_at
    assert not _holding(cluster, victim) and took <= TTL + 5
    wait_for(lambda: not any(pid_alive(p) for p in victim_workers), timeout=15, message="its workers died with it")
    _more_samples(cluster)
    total = producer.stop()
    cluster.check_sinks(total, duplicates_allowed=True)  # a warm stop commits; at-least-once allows a redelivery
    _no_twins(cluster)


def test_sigstop_past_the_ttl_fences_the_supervisor_which_stops_its_stale_workers_writing_nothing(cluster,
                                                                                                topic_factory):
    topic = topic_factory(partitions=2)
    sids = _start(cluster, topic)
    producer = Producer(cluster.bootstrap, topic)
    producer.start()
    victim = sids[0]
    stale = {cid: cluster.slots()[cid][1] for cid in _holding(cluster, victim)}
    stale_workers = [pid for pid, (slot, parent) in cluster.worker_pids().items()
                     if parent == str(cluster.procs[victim].pid)]
    cluster.start_sampler()
    os.kill(cluster.procs[victim].pid, signal.SIGSTOP)
    stopped_at, stopped_wall = time.monotonic(), time.time()
    # the others take its slots once the leases expired (database time); its workers still run meanwhile
    wait_for(lambda: all(cluster.slots()[cid][0] not in (None, victim) for cid in stale), timeout=TTL + 15,
             message="the frozen supervisor's slots claimed by the others")
    assert time.monotonic() - stopped_at >= TTL - 0.5
    os.kill(cluster.procs[victim].pid, signal.SIGCONT)
    seen = set()

    def moved_and_running():
        for cid in stale:
            state = cluster.state(cid)
            if float(state.get("updated_at") or 0) > stopped_wall:  # written since it was frozen
                seen.add((cid, state.get("supervisor"), state.get("epoch")))
        return all(not pid_alive(p) for p in stale_workers) and cluster.running_everywhere()

    wait_for(moved_and_running, timeout=60, interval=0.1, message="stale workers stopped, every slot RUNNING")
    # fenced: not one state hash write under the lost leases after it woke (the database refuses a stale epoch)
    assert not [s for s in seen if s[1] == victim and s[2] == str(stale[s[0]])], seen
    assert len(re.findall(r"SlotLost consumer=", cluster.log(victim))) >= len(stale)
    for cid, epoch in stale.items():
        assert cluster.slots()[cid][1] > epoch
    _more_samples(cluster)
    total = producer.stop()
    cluster.check_sinks(total, duplicates_allowed=True)
    _no_twins(cluster)


def test_a_fourth_supervisor_receives_slots_one_at_a_time_with_warm_handovers_no_duplicate(cluster, topic_factory):
    topic = topic_factory(partitions=2)
    sids = _start(cluster, topic)
    producer = Producer(cluster.bootstrap, topic)
    producer.start()
    cluster.start_sampler()
    in_flight = []

    def balanced():
        with cluster.engine.connect() as conn:
            in_flight.append(conn.exec_driver_sql(
                "SELECT count(*) FROM kcm_replica_slots WHERE handover").scalar())
        spread = cluster.spread()
        return len(spread) == 4 and all(n == 3 for n in spread.values()) and cluster.running_everywhere()

    fourth = cluster.start("s3")
    wait_for(balanced, timeout=120, interval=0.1, message=f"12 slots spread 3/3/3/3 (now {dict(cluster.spread())})")
    assert max(in_flight) <= 1  # one handover at a time, cluster-wide
    claims = re.findall(r"SlotsClaimed count=(\d+)", cluster.log(fourth))
    assert claims and all(c == "1" for c in claims) and len(claims) == 3, claims
    for sid in sids:
        assert len(re.findall(r"HandoverStarted", cluster.log(sid))) == 1
    _more_samples(cluster)
    total = producer.stop()
    cluster.check_sinks(total, duplicates_allowed=False)  # the old worker committed before the new one started
    _no_twins(cluster)


def test_sigterm_drains_a_supervisor_its_slots_move_with_no_duplicate(cluster, topic_factory):
    topic = topic_factory(partitions=2)
    sids = _start(cluster, topic)
    producer = Producer(cluster.bootstrap, topic)
    producer.start()
    cluster.start_sampler()
    victim = sids[0]
    moving = _holding(cluster, victim)
    cluster.procs[victim].send_signal(signal.SIGTERM)
    assert cluster.procs[victim].wait(60) == 0
    cluster.wait_running(timeout=60)
    assert not _holding(cluster, victim) and all(cluster.slots()[cid][0] in sids[1:] for cid in moving)
    assert sorted(cluster.spread().values()) == [6, 6]
    _more_samples(cluster)
    total = producer.stop()
    cluster.check_sinks(total, duplicates_allowed=False)
    _no_twins(cluster)


def test_postgresql_restarted_mid_way_no_twin_nothing_lost_convergence(private_pg_url, cluster_factory,
                                                                      topic_factory):
    cluster = cluster_factory(private_pg_url.url)
    topic = topic_factory(partitions=2)
    sids = _start(cluster, topic, consumers=9, batch=9)
    producer = Producer(cluster.bootstrap, topic)
    producer.start()
    cluster.start_sampler()
    cluster.engine.dispose()
    private_pg_url.stop()
    # the leases lapse while the database is away: every supervisor stops its workers (fenced) within the TTL
    wait_for(lambda: not cluster.worker_pids(), timeout=TTL + 30, message="workers stopped: no lease can be proved")
    private_pg_url.start()

    def converged():
        spread = cluster.spread()
        return sorted(spread) == sorted(sids) and all(n == 3 for n in spread.values()) and cluster.running_everywhere()
    wait_for(converged, timeout=120, interval=0.2, message="every replica RUNNING again, spread 3/3/3")
    _more_samples(cluster)
    total = producer.stop()
    cluster.check_sinks(total, duplicates_allowed=True)
    _no_twins(cluster)
