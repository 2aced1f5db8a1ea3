"""Rate limits per principal (per address when anonymous) on Redis: 429 in the one error body with Retry-After
and X-RateLimit-* headers; reads and writes counted apart; a Redis that is down falls back to each process's
memory instead of failing requests; KCM_RATE_LIMIT_ENABLED=false turns it off."""
from __future__ import annotations

import pytest

from api.context import EXTENSION
from tests.integration.api.conftest import VALID_CONSUMER, closed_port_url, make_app


@pytest.fixture
def limited(pg_clean, redis_client, redis_test_url, pg_url):
    apps = []

    def build(redis_url=redis_test_url, **overrides):
        app = make_app(pg_url, redis_url, **{"rate_limit_read": "5/minute", "rate_limit_write": "2/minute",
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
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
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
