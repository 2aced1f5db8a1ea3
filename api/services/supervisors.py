"""GET /supervisors/: each supervisor's Redis heartbeat (api/services/monitoring.py) with its database registration
and the replica slots it leases (supervisor/slots.py). Reads only."""
from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.services.errors import Unavailable
from api.services.monitoring import MonitoringService
from schema.models import Consumer, ReplicaSlot, SupervisorRow

SUPERVISORS = SupervisorRow.__table__
SLOTS = ReplicaSlot.__table__
CONSUMERS = Consumer.__table__


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # SQLite hands back naive UTC


def _iso(value) -> str | None:
    return _aware(value).isoformat() if value is not None else None


class SupervisorService:
    def __init__(self, client, engine: Engine):
        self.client = client
        self.engine = engine

    def supervisors(self) -> list[dict]:
        """Live supervisors (a heartbeat in Redis, or an unexpired registration) and the slots each holds."""
        beating = {s["id"]: s for s in MonitoringService(self.client, self.engine).supervisors()}
        try:
            with self.engine.connect() as conn:
                # lease expiry is database time (supervisor/slots.py); SQLite's one supervisor uses its clock
                now = conn.execute(sa.select(sa.func.now())).scalar() if self.engine.dialect.name == "postgresql" \
                    else datetime.now(UTC)
                rows = conn.execute(sa.select(SUPERVISORS)).all()
                slots = conn.execute(
                    sa.select(SLOTS.c.consumer_id, SLOTS.c.replica, SLOTS.c.holder, SLOTS.c.epoch,
                              SLOTS.c.lease_expires_at, SLOTS.c.handover, SLOTS.c.state, CONSUMERS.c.name)
                    .select_from(SLOTS.join(CONSUMERS, CONSUMERS.c.id == SLOTS.c.consumer_id))
                    .where(SLOTS.c.holder.is_not(None))
                    .order_by(SLOTS.c.consumer_id, SLOTS.c.replica)).all()
        except sa.exc.SQLAlchemyError as exc:
            raise Unavailable(f"the database is unreachable, the slots cannot be read ({type(exc).__name__})") from exc
        registered = {r.id: r for r in rows}
        by_holder: dict[str, list[dict]] = {}
        for slot in slots:
            by_holder.setdefault(slot.holder, []).append({
                "consumer_id": slot.consumer_id, "name": slot.name, "replica": slot.replica, "epoch": slot.epoch,
                "state": slot.state, "handover": bool(slot.handover), "lease_expires_at": _iso(slot.lease_expires_at)})
        found = []
        for sid in sorted(set(beating) | set(registered)):
            row = registered.get(sid)
            alive = row is not None and _aware(row.lease_expires_at) > _aware(now)
            if sid not in beating and not alive:
                continue  # dead: its slots are free (they still name it until another supervisor takes them)
            # registered, no Redis heartbeat (yet, or Redis lost it): its database heartbeat says as much
            entry = beating.get(sid) or {"id": sid, "host": row.host, "pid": row.pid,
                                         "started_at": _iso(row.started_at), "last_heartbeat": _iso(row.heartbeat_at),
                                         "replicas": len(by_holder.get(sid, []))}
            found.append({**entry, "registered": row is not None, "lease_alive": alive,
                          "labels": (row.labels or {}) if row is not None else {},
                          "draining": bool(row.draining) if row is not None else False,
                          "lease_expires_at": _iso(row.lease_expires_at) if row is not None else None,
                          "slots": by_holder.get(sid, [])})
        return found
