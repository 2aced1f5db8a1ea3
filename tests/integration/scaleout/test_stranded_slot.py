"""A slot only one supervisor may run is never left free while that supervisor runs slots others may run: it hands
one of those over (warm) to a supervisor with room, and claims the pinned one, within its KCM_MAX_WORKERS."""
from __future__ import annotations

import re

from tests.integration.scaleout.test_capacity_and_placement import _holders, _sample
from tests.integration.scaleout.test_supervisors import _more_samples, _no_twins
from tests.support.kafka import produce, wait_for


def test_a_capped_supervisor_hands_over_a_free_slot_to_run_one_only_it_may_run(cluster, topic_factory):
    topic = topic_factory(partitions=1)
    produce(cluster.bootstrap, topic, 5)
    zone_a = cluster.start("zone-a", KCM_SUPERVISOR_LABELS="zone=a", KCM_MAX_WORKERS="2")
    plain = cluster.start("plain")
    cluster.wait_registered([zone_a, plain])
    placed = _sample(cluster)
    free = cluster.create_consumers(topic, 4)
    cluster.wait_running(timeout=90, cids=free)
    assert cluster.spread() == {zone_a: 2, plain: 2}  # the cap is zone-a's whole share
    pinned = cluster.create_consumers(topic, 1, placement={"zone": "a"})[0]
    try:  # zone-a's 2 now: the pinned slot and 1 free; the plain one takes the other 3
        wait_for(lambda: cluster.slots().get(pinned, (None,))[0] == zone_a and cluster.spread() == {zone_a: 2, plain: 3}
                 and cluster.running_everywhere(), timeout=60, interval=0.2,
                 message="the pinned slot RUNNING on zone-a, a free one moved to the plain supervisor")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; slots now {_holders(cluster)}, pinned {pinned}") from None
    handed = re.findall(r"HandoverStarted consumer=(\S+)", cluster.log(zone_a))
    assert len(handed) == 1 and handed[0] in free, handed
    _more_samples(cluster)
    cluster.sampler.stop()
    on_zone_a = [sum(zone_a in sids for sids in sample.values()) for sample in placed.runners]
    assert max(on_zone_a) == 2, on_zone_a  # the handed-over worker had exited before the pinned one started
    _no_twins(cluster)
    cluster.check_sinks(5, duplicates_allowed=False)
