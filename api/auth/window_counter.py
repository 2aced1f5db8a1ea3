"""One rate limit (``amount`` per period) counted in fixed windows aligned to the clock, in this process's memory,
and added to a shared ``limits`` storage (Redis) in batches: the count every API process sees.

Per key (a principal, or a client address) the counter keeps the shared total it last read (``known``) and the
hits it has not sent yet (``pending``). A hit is decided here while ``pending`` is below the batch; the
batch-th hit sends them all (``storage.incr(key, expiry, amount=pending)``, one round trip) and is decided by the
total that comes back. ``known + pending`` never exceeds the true count, so a refusal decided here is always
right; an admission may miss what other processes have not sent yet: each holds back at most ``batch - 1``
hits, so over a window at most ``(P - 1) * (batch - 1)`` requests beyond the limit pass across P processes.
``batch_for`` makes that under 1 % of the limit per extra process, and 1 (every hit sent, exact) for a limit
of 100 or less per window.

A storage that fails (Redis down) leaves the hits pending: this process's own count decides alone until the
storage answers again (retried after 1, 2, 4 ... 30 s) and then receives them. The clock is injected."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from limits import RateLimitItem
from limits.storage import Storage

log = logging.getLogger("kcm.api.ratelimit")

MAX_BATCH = 256  # a huge limit still reaches Redis every 256 hits of a process
MAX_KEYS = 10_000  # distinct keys per counter before entries of past windows (then idle ones) are dropped
MAX_RETRY_SECONDS = 30.0
WINDOW, KNOWN, PENDING = 0, 1, 2  # a key's state: [window number, shared total last read, hits not sent yet]


def batch_for(amount: int) -> int:
    """Hits a process may count before sending them: 1 % of the limit, between 1 and MAX_BATCH."""
    return max(1, min(MAX_BATCH, amount // 100))


class WindowCounter:
    def __init__(self, item: RateLimitItem, scope: str, storage: Storage, *, batch: int | None = None,
                 clock: Callable[[], float] = time.time):
        self.item, self.scope, self.storage, self.clock = item, scope, storage, clock
        self.amount, self.period = item.amount, item.get_expiry()
        self.batch = batch_for(item.amount) if batch is None else batch
        self._keys: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._failures = 0

    def window_end(self, now: float) -> int:
        """The epoch second the window holding ``now`` ends (X-RateLimit-Reset)."""
        return (int(now // self.period) + 1) * self.period

    def hit(self, key: str, *, exact: bool = False) -> bool:
        """Count one request for ``key``; True if it is within the limit. ``exact``: send it at once."""
        now = self.clock()
        window = int(now // self.period)
        with self._lock:
            state = self._keys.get(key)
            if state is None or state[WINDOW] != window:
                if len(self._keys) >= MAX_KEYS:
                    self._prune(window)
                state = self._keys[key] = [window, 0, 0]
            state[PENDING] += 1
            if (state[PENDING] < (1 if exact else self.batch)) or now < self._retry_at:
                return state[KNOWN] + state[PENDING] <= self.amount
            sending, state[PENDING] = state[PENDING], 0
        try:
            total = self.storage.incr(self.item.key_for(key, self.scope, window),
                                      (window + 1) * self.period - int(now) + 1, amount=sending)
        except self.storage.base_exceptions as exc:
            return self._unsent(state, sending, now, exc)
        with self._lock:
            self._failures = 0
            state[KNOWN] = max(state[KNOWN], total)  # two threads' answers may come back in either order
        return total <= self.amount

    def _unsent(self, state: list[int], sending: int, now: float, exc: Exception) -> bool:
        with self._lock:
            state[PENDING] += sending
            delay = min(MAX_RETRY_SECONDS, 2.0 ** self._failures)
            self._failures += 1
            self._retry_at = now + delay
            within = state[KNOWN] + state[PENDING] <= self.amount
        # the class only: a storage error's text may carry its URL
        log.warning("rate-limit storage unreachable (%s): counting %s in this process's memory, retrying in "
                    "%.0f s", type(exc).__name__, self.scope, delay)
        return within

    def _prune(self, window: int) -> None:
        """Under the lock: drop past windows' entries, then, if still full, the current ones with nothing
        pending (they only cache a total the next send reads again)."""
        for key in [key for key, state in self._keys.items() if state[WINDOW] != window]:
            del self._keys[key]
        if len(self._keys) >= MAX_KEYS:
            for key in [key for key, state in self._keys.items() if not state[PENDING]]:
                del self._keys[key]
