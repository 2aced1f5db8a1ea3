"""The consumers the lag monitor watches: every row of the state database, whatever its desired state."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import sqlalchemy as sa

from schema.kafka_offsets import FROM_START  # where a group without a commit starts
from schema.models import Consumer
from schema.spec import bootstrap_servers_of
from schema.states import DesiredState


@dataclass(frozen=True)
class Watched:
    consumer_id: str
    topic: str
    group: str
    bootstrap_servers: str
    running: bool  # the desired state keeps workers: running or paused
    replicas: int
    starts_from_beginning: bool
    security: dict = field(default_factory=dict, compare=False)
    paused: bool = False  # the health verdict is PAUSED, not a STALL (schema/health.py)

    @property
    def cluster_key(self) -> tuple[str, str]:
        """Consumers with the same brokers and credentials share one AdminClient."""
        return self.bootstrap_servers, json.dumps(self.security, sort_keys=True, default=str)


def load_watched(session_factory) -> list[Watched]:
    table = Consumer.__table__
    columns = [table.c.id, table.c.topic, table.c.consumer_group, table.c.bootstrap_servers, table.c.broker_ip,
               table.c.broker_port, table.c.desired_state, table.c.replicas, table.c.auto_offset_reset,
               table.c.security]
    with session_factory() as session:
        rows = session.execute(sa.select(*columns)).all()
    return [Watched(consumer_id=str(row.id), topic=row.topic, group=row.consumer_group,
                    bootstrap_servers=bootstrap_servers_of(row),
                    running=DesiredState(row.desired_state) in (DesiredState.RUNNING, DesiredState.PAUSED),
                    paused=DesiredState(row.desired_state) == DesiredState.PAUSED,
                    replicas=int(row.replicas or 0),
                    starts_from_beginning=(row.auto_offset_reset or "earliest") in FROM_START,
                    security=dict(row.security or {}))
            for row in rows]
