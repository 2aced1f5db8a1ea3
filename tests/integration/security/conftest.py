"""Fixtures of the security tests: the API's (an authenticated admin client), the runtime's (a real supervisor),
and the local stack's SCRAM listener (deploy/local/services.sh), which a test needing it FAILS without."""
from __future__ import annotations

import os

import pytest

from tests.integration.api.conftest import app, client, make_app  # noqa: F401 - fixtures and helper
from tests.integration.runtime.conftest import runtime  # noqa: F401 - fixture

HOW = ("the local stack's SCRAM listener: restart it with `deploy/local/services.sh stop kafka && "
       "deploy/local/services.sh start kafka` and load `eval \"$(make -s services-env)\"`")


@pytest.fixture(scope="session")
def scram() -> dict[str, str]:
    """The SCRAM-SHA-512 listener's bootstrap, user and password; a metadata request through it must work."""
    from confluent_kafka.admin import AdminClient

    values = {name: os.environ.get(name, "").strip() for name in (
        "KCM_LOCAL_KAFKA_SCRAM_BOOTSTRAP", "KCM_LOCAL_KAFKA_SCRAM_USER", "KCM_SECRET_KAFKA_PASSWORD")}
    missing = [name for name, value in values.items() if not value]
    if missing:
        pytest.fail(f"{', '.join(missing)} not set: {HOW}", pytrace=False)
    admin = AdminClient({"bootstrap.servers": values["KCM_LOCAL_KAFKA_SCRAM_BOOTSTRAP"],
                         "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                         "sasl.username": values["KCM_LOCAL_KAFKA_SCRAM_USER"],
                         "sasl.password": values["KCM_SECRET_KAFKA_PASSWORD"], "socket.timeout.ms": 5000})
    try:
        admin.list_topics(timeout=10)
    except Exception as exc:
        pytest.fail(f"no SCRAM listener at {values['KCM_LOCAL_KAFKA_SCRAM_BOOTSTRAP']} ({exc}): {HOW}",
                    pytrace=False)
    return {"bootstrap": values["KCM_LOCAL_KAFKA_SCRAM_BOOTSTRAP"], "user": values["KCM_LOCAL_KAFKA_SCRAM_USER"],
            "password": values["KCM_SECRET_KAFKA_PASSWORD"]}
