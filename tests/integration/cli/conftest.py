"""Run the installed ``kcm`` console script as a user would, against the real Kafka."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

KCM = Path(sys.executable).parent / "kcm"


@pytest.fixture
def kcm(kafka_bootstrap):
    """``kcm(*args, input=None, env=None)`` -> CompletedProcess; KCM_KAFKA_BOOTSTRAP is the test broker."""
    assert KCM.exists(), f"{KCM} is missing: `make install` installs the console script"

    def run(*args: str, input: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "KCM_KAFKA_BOOTSTRAP": kafka_bootstrap, **(env or {})}
        done = subprocess.run([str(KCM), *args], input=input if input is not None else b"", env=full_env,
                              capture_output=True, timeout=120)
        done.out = done.stdout.decode()
        done.err = done.stderr.decode()
        assert "Traceback" not in done.err, done.err
        return done

    return run


@pytest.fixture
def new_topic_name(kafka_admin):
    """A topic name nobody uses yet; the topic is deleted after the test if the test created it."""
    name = f"kcm-cli-test-{uuid.uuid4().hex[:12]}"
    yield name
    if name in kafka_admin.list_topics(timeout=10).topics:
        kafka_admin.delete_topics([name], operation_timeout=30)[name].result(30)
