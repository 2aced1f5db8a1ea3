"""The replica lease: at most one live process consumes for ``(consumer_id, replica)``.

``SET NX PX`` with the value ``pid@host:token``; the heartbeat thread extends it only while it still holds
that exact value (compare-and-extend in Lua), and the worker deletes it on exit only if it is still its own.
"""
from __future__ import annotations

import secrets
import time

import redis

from schema import keys

# KEYS[1] lease, ARGV[1] our value, ARGV[2] ttl ms -> 1 extended, 2 re-taken after it expired, 0 someone else's
_EXTEND = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseLost(RuntimeError):
    """Another process holds this replica's lease now."""


class Lease:
    def __init__(self, client: redis.Redis, consumer_id: str, replica: int, *, pid: int, host: str, ttl: float):
        self.client = client
        self.key = keys.lease_key(consumer_id, replica)
        self.value = f"{pid}@{host}:{secrets.token_hex(8)}"
        self.ttl_ms = max(int(ttl * 1000), 100)
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)

    def acquire(self, wait: float) -> bool:
        """Take the lease, waiting up to ``wait`` seconds for a dead holder's lease to expire."""
        deadline = time.monotonic() + wait
        while True:
            if self.client.set(self.key, self.value, nx=True, px=self.ttl_ms):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.1, self.ttl_ms / 4000))

    def holder(self) -> str:
        value = self.client.get(self.key)
        return value.decode() if value else ""

    def extend(self) -> None:
        if not self._extend(keys=[self.key], args=[self.value, self.ttl_ms]):
            raise LeaseLost(f"lease {self.key} is held by {self.holder() or 'nobody'}")

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.value])
