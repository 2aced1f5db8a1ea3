"""Everything the supervisor reads from and writes to Redis; key names come from schema.keys only."""
from __future__ import annotations

import os
import socket
import time

import redis

from schema import keys
from schema.replica_machine import Heartbeat

# KEYS[1] a replica state hash, ARGV[1] our slot epoch, ARGV[2..] field, value, ...: written unless a newer holder
# (a higher epoch) already writes it, so a supervisor that lost the slot cannot overwrite the new holder's word
_PUBLISH = """
local seen = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '')
if seen and seen > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""
_DELETE = """
local seen = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '')
if seen and seen > tonumber(ARGV[1]) then return 0 end
return redis.call('DEL', KEYS[1])
"""

# a stopped consumer that no supervisor holds still reads STOPPED: a placeholder at epoch 0, written only where no
# hash exists (any holder's word, epoch >= 1, wins), deleted with the consumer unless a holder wrote it since
_PLACEHOLD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


class RedisState:
    def __init__(self, client: redis.Redis, *, supervisor_id: str, heartbeat_interval: float):
        self.client = client
        self.supervisor_id = supervisor_id
        self.host = socket.gethostname()
        self.heartbeat_ttl = heartbeat_interval * 3
        self.started_at = time.time()
        self.last_command_id = "$"
        self._publish = client.register_script(_PUBLISH)
        self._delete = client.register_script(_DELETE)
        self._placehold = client.register_script(_PLACEHOLD)

    # ------------------------------------------------------------------ commands (wake-ups only)
    def start_reading_commands(self) -> None:
        """Read from the newest entry on: the first reconcile covers everything older."""
        newest = self.client.xrevrange(keys.COMMAND_STREAM, count=1)
        self.last_command_id = newest[0][0].decode() if newest else "0-0"

    def wait_for_commands(self, block_seconds: float) -> list[dict[str, str]]:
        block_ms = max(int(block_seconds * 1000), 1)
        reply = self.client.xread({keys.COMMAND_STREAM: self.last_command_id}, count=100, block=block_ms)
        commands = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                self.last_command_id = entry_id.decode()
                commands.append({k.decode(): v.decode() for k, v in fields.items()})
        return commands

    # ------------------------------------------------------------------ worker heartbeats
    def read_heartbeats(self, replicas: list[tuple[str, int, int]]) -> dict[tuple[str, int], dict[str, str]]:
        """HGETALL of each ``(consumer_id, replica, pid)`` heartbeat, in one round trip."""
        if not replicas:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for cid, n, _pid in replicas:
            pipe.hgetall(keys.heartbeat_key(cid, n))
        result = {}
        for (cid, n, _pid), raw in zip(replicas, pipe.execute(), strict=True):
            result[(cid, n)] = {k.decode(): v.decode() for k, v in raw.items()}
        return result

    def judge(self, fields: dict[str, str] | None, pid: int) -> Heartbeat:
        """Alive means the key exists, is this pid's, and is younger than its TTL."""
        if not fields or fields.get("pid") != str(pid):
            return Heartbeat(fresh=False, ready=False)
        try:
            age = time.time() - float(fields.get("last_heartbeat", "0"))
        except ValueError:
            age = float("inf")
        return Heartbeat(
            fresh=age <= self.heartbeat_ttl,
            ready=fields.get("phase") in ("consuming", "stopping"),
            last_error=fields.get("last_error", ""),
            retrying=fields.get("retrying") == "1",
        )

    # ------------------------------------------------------------------ replica state hashes (ours only)
    def publish_states(self, states: dict[tuple[str, int], tuple[int, dict[str, str]]]) -> None:
        """``(consumer_id, replica) -> (slot epoch, fields)``; each written only while no higher epoch wrote it."""
        if not states:
            return
        pipe = self.client.pipeline(transaction=False)
        now = f"{time.time():.3f}"
        for (cid, n), (epoch, fields) in states.items():
            mapping = {**fields, "host": self.host, "supervisor": self.supervisor_id,
                       "supervisor_id": self.supervisor_id, "epoch": str(epoch), "updated_at": now}
            args = [str(epoch)] + [item for pair in mapping.items() for item in pair]
            self._publish(keys=[keys.replica_state_key(cid, n)], args=args, client=pipe)
        pipe.execute()

    def delete_fenced(self, states: dict[tuple[str, int], int]) -> None:
        """Delete each state hash unless a higher epoch than ours wrote it."""
        if not states:
            return
        pipe = self.client.pipeline(transaction=False)
        for (cid, n), epoch in states.items():
            self._delete(keys=[keys.replica_state_key(cid, n)], args=[str(epoch)], client=pipe)
        pipe.execute()

    def placehold(self, stopped: list[tuple[str, int, int]]) -> None:
        """A STOPPED state hash (epoch 0) for each ``(consumer_id, replica, generation)`` that has none."""
        if not stopped:
            return
        pipe = self.client.pipeline(transaction=False)
        now = f"{time.time():.3f}"
        for cid, n, generation in stopped:
            mapping = {"state": "STOPPED", "pid": "", "generation": str(generation), "restarts": "0", "retries": "0",
                       "backoff_delay": "0", "last_error": "", "degraded": "", "started_at": "", "host": self.host,
                       "supervisor": self.supervisor_id, "supervisor_id": self.supervisor_id, "epoch": "0",
                       "updated_at": now}
            self._placehold(keys=[keys.replica_state_key(cid, n)], args=[x for pair in mapping.items() for x in pair],
                            client=pipe)
        pipe.execute()

    def leases_held(self, replicas: list[tuple[str, int]]) -> set[tuple[str, int]]:
        """The replicas whose worker lease (workers/lease.py) some process still holds."""
        if not replicas:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for cid, n in replicas:
            pipe.exists(keys.lease_key(cid, n))
        return {replica for replica, found in zip(replicas, pipe.execute(), strict=True) if found}

    def our_state_keys(self) -> list[tuple[str, int]]:
        """Every replica state hash this supervisor wrote, including ones it forgot (it was restarted)."""
        found = []
        for raw in self.client.scan_iter(match=keys.REPLICA_STATES_PATTERN, count=500):
            replica = keys.parse_replica_state_key(raw.decode())
            if replica and self.client.hget(raw, "supervisor_id") == self.supervisor_id.encode():
                found.append(replica)
        return found

    def delete_states(self, replicas: list[tuple[str, int]]) -> None:
        if replicas:
            self.client.delete(*(keys.replica_state_key(cid, n) for cid, n in replicas))

    # ------------------------------------------------------------------ the supervisor's own heartbeat
    def beat(self, replica_count: int) -> None:
        key = keys.supervisor_key(self.supervisor_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={
            "pid": str(os.getpid()), "host": self.host, "started_at": f"{self.started_at:.3f}",
            "last_heartbeat": f"{time.time():.3f}", "replicas": str(replica_count)})
        pipe.pexpire(key, max(int(self.heartbeat_ttl * 1000), 3000))
        pipe.sadd(keys.SUPERVISORS_INDEX, self.supervisor_id)
        pipe.execute()

    def clean_supervisor_index(self) -> None:
        """The index is only an index: drop ids whose heartbeat hash expired."""
        for raw in self.client.smembers(keys.SUPERVISORS_INDEX):
            sid = raw.decode()
            if sid != self.supervisor_id and not self.client.exists(keys.supervisor_key(sid)):
                self.client.srem(keys.SUPERVISORS_INDEX, sid)

    def withdraw(self) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(keys.supervisor_key(self.supervisor_id))
        pipe.srem(keys.SUPERVISORS_INDEX, self.supervisor_id)
        pipe.execute()
