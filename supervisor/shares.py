"""How many replica slots each live supervisor should run: per placement, capped by KCM_MAX_WORKERS. Pure logic.

Placements are taken from the most constrained (fewest supervisors may run them) to the least; each one's slots
are water-filled over the supervisors that may run them and still have room under their cap, evenly where no cap
binds. So a capped supervisor spends its room on what only it may run, and what it cannot take goes to the
others (docs/runtime.md, "Several supervisors"). Every supervisor computes the same plan from the same rows.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from schema.placement import matches

EPSILON = 1e-9


@dataclass(frozen=True)
class Capacity:
    labels: dict[str, str] | None
    max_workers: int  # 0: no cap


def _fill(count: float, room: dict[str, float]) -> dict[str, float]:
    """``count`` slots over these supervisors, evenly, none above its room (math.inf: no cap)."""
    given = {}
    left = count
    waiting = sorted(room, key=lambda sid: (room[sid], sid))
    while waiting and left > EPSILON:
        level = left / len(waiting)
        sid = waiting[0]
        if room[sid] >= level:  # no cap binds any more: the rest share evenly
            given.update({s: level for s in waiting})
            return given
        given[sid] = room[sid]
        left -= room[sid]
        waiting.pop(0)
    return given


def plan(supervisors: dict[str, Capacity], groups: list[tuple[dict | None, int]]) -> dict[str, float]:
    """Supervisor id -> the (fractional) slots it should run, for ``(placement, slot count)`` groups."""
    load = dict.fromkeys(supervisors, 0.0)
    eligible = [(placement, count, [sid for sid, cap in supervisors.items() if matches(placement, cap.labels)])
                for placement, count in groups]
    eligible.sort(key=lambda g: (len(g[2]), json.dumps(g[0] or {}, sort_keys=True)))
    for _placement, count, sids in eligible:
        room = {sid: (supervisors[sid].max_workers - load[sid]) if supervisors[sid].max_workers else math.inf
                for sid in sids}
        for sid, amount in _fill(count, {s: r for s, r in room.items() if r > EPSILON}).items():
            load[sid] += amount
    return load


def whole(amount: float, max_workers: int) -> int:
    """A fractional plan rounded up to a share, never above the cap."""
    share = math.ceil(amount - EPSILON)
    return min(share, max_workers) if max_workers else share
