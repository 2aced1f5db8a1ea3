"""Each live supervisor's share of the replica slots (supervisor/shares.py): per placement, capped. Pure logic."""
from __future__ import annotations

from supervisor.shares import Capacity, plan, whole

FREE = Capacity(None, 0)


def shares(supervisors: dict[str, Capacity], groups) -> dict[str, int]:
    return {sid: whole(amount, supervisors[sid].max_workers) for sid, amount in plan(supervisors, groups).items()}


def test_what_a_capped_supervisor_cannot_take_goes_to_the_others():
    assert shares({"cap2": Capacity(None, 2), "free": FREE}, [(None, 8)]) == {"cap2": 2, "free": 6}
    assert shares({"a": Capacity(None, 1), "b": Capacity(None, 2), "c": FREE}, [(None, 9)]) == {"a": 1, "b": 2, "c": 6}
    # every one capped: what no room is left for stays unassigned
    assert shares({"a": Capacity(None, 2), "b": Capacity(None, 3)}, [(None, 9)]) == {"a": 2, "b": 3}


def test_each_placement_splits_over_the_supervisors_that_may_run_it():
    zone_a, plain = Capacity({"zone": "a"}, 0), FREE
    groups = [({"zone": "a"}, 2), (None, 2)]
    assert shares({"a": zone_a, "b": plain}, groups) == {"a": 3, "b": 1}
    assert shares({"a": zone_a, "b": plain}, [({"zone": "c"}, 1), (None, 2)]) == {"a": 1, "b": 1}
    assert shares({"s0": FREE, "s1": FREE, "s2": FREE}, [(None, 30)]) == {"s0": 10, "s1": 10, "s2": 10}


def test_a_capped_supervisor_spends_its_room_on_what_only_it_may_run():
    capped = Capacity({"zone": "a"}, 2)
    assert shares({"a": capped, "b": FREE}, [(None, 4), ({"zone": "a"}, 2)]) == {"a": 2, "b": 4}
