"""Rate limits per principal (per address when anonymous), shared through Redis: 429 in the one error body with
Retry-After and X-RateLimit-* headers; reads and writes counted apart; a principal's hits counted in memory and
sent to Redis in batches, within the bound docs/security.md states; a Redis that is down falls back to each
process's memory instead of failing requests; KCM_RATE_LIMIT_ENABLED=false turns it off.

Windows are aligned to the clock: the limits here are per hour or per day, so a test does not straddle a window's
end (a minute's would, about once in a hundred runs)."""
from __future__ import annotations

import time

import pytest
import redis as redis_lib
from limits import parse
from limits.storage import MemoryStorage

from api.auth.window_counter import WindowCounter, batch_for
from api.context import EXTENSION
from tests.integration.api.conftest import VALID_CONSUMER, closed_port_url, make_app


@pytest.fixture
def limited(pg_clean, redis_client, redis_test_url, pg_url):
    apps = []

    def build(redis_url=redis_test_url, **overrides):
        app = make_app(pg_url, redis_url, **{"rate_limit_read": "5/hour", "rate_limit_write": "2/hour",
                                             **overrides})
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions[EXTENSION].close()


def test_over_the_limit_is_429_with_retry_after_and_the_error_body(limited, redis_client):
    client = limited().test_client()
    statuses = [client.get("/consumers/").status_code for _ in range(5)]
    assert statuses == [200] * 5
    refused = client.get("/consumers/")
    assert refused.status_code == 429
    assert set(refused.json) == {"code", "status", "message", "errors"} and refused.json["code"] == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert int(refused.headers["X-RateLimit-Reset"]) % 3600 == 0  # the end of this clock hour
    assert refused.headers["X-RateLimit-Limit"] == "5" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) > 0
    assert refused.headers["X-Request-ID"]
    assert any(b"LIMITER" in key for key in redis_client.keys("*"))  # counted in Redis, shared by processes


def test_reads_and_writes_are_counted_apart_and_per_principal(limited):
    app = limited()
    admin = app.test_client()
    for _ in range(2):
        assert admin.post("/consumers/", json=VALID_CONSUMER).status_code == 201
    assert admin.post("/consumers/", json=VALID_CONSUMER).status_code == 429
    assert admin.get("/consumers/").status_code == 200  # the read bucket is untouched
    # another principal has buckets of its own
    token = app.test_client(token=None)  # anonymous: counted by address
    assert token.post("/consumers/", json=VALID_CONSUMER).status_code == 401
    other = limited().test_client()  # a second process shares the Redis counts: the admin is still limited
    assert other.post("/consumers/", json=VALID_CONSUMER).status_code == 429


def test_a_second_api_process_sees_the_same_counts(limited):
    first, second = limited().test_client(), limited().test_client()
    for _ in range(3):
        assert first.get("/consumers/").status_code == 200
    for _ in range(2):
        assert second.get("/consumers/").status_code == 200
    assert second.get("/consumers/").status_code == 429


def test_anonymous_callers_are_limited_by_address(limited):
    anonymous = limited().test_client(token=None)
    assert [anonymous.get("/consumers/").status_code for _ in range(5)] == [401] * 5
    assert anonymous.get("/consumers/").status_code == 429  # a token guesser is slowed down too


def test_redis_down_falls_back_to_memory_never_a_500(limited):
    client = limited(redis_url=closed_port_url()).test_client()
    statuses = [client.get("/processor-types/").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]


def test_rate_limiting_can_be_turned_off(limited):
    client = limited(rate_limit_enabled=False).test_client()
    assert {client.get("/consumers/").status_code for _ in range(8)} == {200}


def test_a_bad_rate_limit_setting_is_refused_at_start(limited):
    from schema.settings import SettingsError

    with pytest.raises(SettingsError, match="KCM_RATE_LIMIT_READ"):
        limited(rate_limit_read="lots")


# ---------------------------------------------------------------------- counted in batches
def bootstrap_count(redis_client, scope: str = "read") -> int:
    """The bootstrap admin's count in Redis for this window (the limits library names the keys)."""
    keys = redis_client.keys(f"LIMITS:LIMITER/bootstrap:bootstrap/{scope}/*")
    return sum(int(redis_client.get(key)) for key in keys)


def test_a_principals_hits_reach_redis_in_batches(limited, redis_client):
    client = limited(rate_limit_read="5000/day").test_client()  # 1 % of it: batches of 50 hits
    for _ in range(80):
        assert client.get("/processor-types/").status_code == 200
    assert bootstrap_count(redis_client) == 50  # one round trip; the other 30 wait for the next batch
    for _ in range(20):
        client.get("/processor-types/")
    assert bootstrap_count(redis_client) == 100


def test_batched_counts_across_processes_stay_within_the_documented_bound(limited):
    """1000 a day is counted 10 hits at a time: two processes let at most (2 - 1) x (10 - 1) requests through
    beyond the limit, and never refuse one below it."""
    apps = [limited(rate_limit_read="1000/day"), limited(rate_limit_read="1000/day")]
    clients = [app.test_client() for app in apps]
    admitted = 0
    refused_by = set()
    for n in range(1100):
        index = n % 2
        status = clients[index].get("/processor-types/").status_code
        assert status in (200, 429)
        if status == 200:
            assert index not in refused_by, f"request {n} admitted by a process that has refused one"
            admitted += 1
        else:
            refused_by.add(index)
    assert batch_for(1000) == 10
    assert 1000 <= admitted <= 1000 + (2 - 1) * (10 - 1)
    assert refused_by == {0, 1}


# ---------------------------------------------------------------------- the counter itself (pure logic)
class FlakyStorage(MemoryStorage):
    """The limits library's in-memory storage, made to fail like an unreachable Redis."""

    down = False

    @property
    def base_exceptions(self):
        return redis_lib.ConnectionError

    def incr(self, key, expiry, amount=1):
        if self.down:
            raise redis_lib.ConnectionError("unreachable")
        return super().incr(key, expiry, amount)


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_storage_outage_counts_in_memory_and_the_hits_reach_it_once_it_answers():
    storage, clock = FlakyStorage(), Clock(1_000_000 * 3600.0 + 10)
    counter = WindowCounter(parse("5/hour"), "read", storage, clock=clock)
    storage.down = True
    assert [counter.hit("p") for _ in range(6)] == [True] * 5 + [False]  # this process's own count decides
    storage.down = False
    clock.now += 0.5  # within the retry delay (1 s): still counted here only
    assert counter.hit("p") is False
    assert storage.get(counter.item.key_for("p", "read", 1_000_000)) == 0
    clock.now += 1
    assert counter.hit("p") is False  # Redis answers again and receives every hit of the outage
    assert storage.get(counter.item.key_for("p", "read", 1_000_000)) == 8


def test_a_new_window_starts_every_count_again():
    clock = Clock(7 * 86400.0 + 5)
    counter = WindowCounter(parse("3/day"), "read", MemoryStorage(), clock=clock)
    assert [counter.hit("p") for _ in range(4)] == [True, True, True, False]
    assert counter.window_end(clock.now) == 8 * 86400
    clock.now = 8 * 86400.0
    assert counter.hit("p") is True


def test_refusals_decided_in_memory_are_never_wrong():
    """A process's view (the shared total it last read plus its own unsent hits) never exceeds the true count,
    so when it says 'over the limit' the shared count is over too."""
    storage, clock = MemoryStorage(), Clock(time.time())
    counters = [WindowCounter(parse("500/day"), "read", storage, clock=clock) for _ in range(3)]  # batches of 5
    refused = 0
    for n in range(600):
        counter = counters[n * 7 % 3 if n % 5 else 0]  # uneven shares
        if not counter.hit("p"):
            assert n + 1 > 500, f"hit {n + 1} refused below the limit"  # n + 1: every process's hits so far
            refused += 1
    assert refused >= 600 - 500 - (3 - 1) * (5 - 1)  # the bound on what passes beyond the limit
