"""The bench stack's environment: kcm gets the harness's own secrets and state, never the caller's KCM_* settings."""
from __future__ import annotations

import pytest

from bench import stack
from bench.bare_transform import CONFIG, order_value, transformer
from bench.stack import MASK_KEY_ENV, BenchEnv, set_bench_secrets

KCM_URL = "postgresql+psycopg2://kcm:kcm@127.0.0.1:15432/kcm"


@pytest.fixture
def caller_env(monkeypatch):
    monkeypatch.setenv("KCM_DATABASE_URL", KCM_URL)
    monkeypatch.setenv("KCM_REDIS_URL", "redis://127.0.0.1:16379/0")
    monkeypatch.setenv("KCM_SECRET_KAFKA_PASSWORD", "the caller's own")
    monkeypatch.setenv("KCM_BATCH_SIZE", "7")
    monkeypatch.delenv(MASK_KEY_ENV, raising=False)
    return monkeypatch


def test_kcm_gets_the_harness_secrets_but_none_of_the_callers_kcm_settings(caller_env):
    set_bench_secrets()
    env = BenchEnv.from_env("run1").kcm_environ()
    assert len(env[MASK_KEY_ENV]) == 64
    assert "KCM_SECRET_KAFKA_PASSWORD" not in env and "KCM_BATCH_SIZE" not in env
    assert env["KCM_DATABASE_URL"].endswith("/kcm_bench") and env["KCM_REDIS_URL"].endswith("/14")


def test_each_run_makes_up_its_own_mask_key(caller_env):
    set_bench_secrets()
    first = stack.os.environ[MASK_KEY_ENV]
    set_bench_secrets()
    assert stack.os.environ[MASK_KEY_ENV] != first


def test_named_state_moves_control_scale_along_with_it(caller_env):
    env = BenchEnv.from_env("run1", database="kcm_bench_b", redis_db=11)
    assert env.database_url.endswith("/kcm_bench_b") and env.redis_url.endswith("/11")
    assert env.scale_database_url.endswith("/kcm_bench_b_scale") and env.scale_redis_url.endswith("/10")
    default = BenchEnv.from_env("run2")
    assert default.scale_database_url.endswith("/kcm_bench_scale") and default.scale_redis_url.endswith("/13")


@pytest.mark.parametrize(("database", "redis_db"), [("kcm", 14), ("kcm_bench", 1)])
def test_the_state_kcm_itself_is_configured_with_is_never_the_benchs(caller_env, database, redis_db):
    with pytest.raises(SystemExit, match="would empty"):
        BenchEnv.from_env("run1", database=database, redis_db=redis_db)


def test_the_bare_loops_hmac_mask_writes_json_transforms_bytes(caller_env):
    from processors.base import Record
    from processors.context import ProcessorContext
    from processors.json_transform import JsonTransformStep
    from schema.settings import Settings

    set_bench_secrets()
    environ = BenchEnv.from_env("run1").kcm_environ()
    step = JsonTransformStep(JsonTransformStep.validate_config(CONFIG), context=ProcessorContext(
        settings=Settings.from_env(environ), consumer_id="bench", bootstrap_servers="127.0.0.1:19092"))
    step.open()
    bare = transformer(environ[MASK_KEY_ENV].encode())
    [kcm] = step.transform([Record("t", 0, 5, order_value(5))])
    assert kcm.value() == bare(order_value(5))
    assert b"customer1000000005@example.com" not in kcm.value() and b'"email":"***"' not in kcm.value()
