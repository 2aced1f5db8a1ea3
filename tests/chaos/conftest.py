"""Fixtures of the chaos suite: private services for the faults that stop one, and the results table.

``KCM_CHAOS_ROUNDS`` (default 1: the short form ``make test`` runs) repeats every fault; ``make chaos`` runs 5.
The table of fault x missing x duplicates x recovery is printed at the end of the session and written to
``.local/chaos/latest.md`` (docs/reliability.md keeps the latest full run).
"""
from __future__ import annotations

import os
import uuid

import pytest

from tests.chaos.harness import TABLE_HEAD, Result
from tests.conftest import ROOT

RESULTS: list[Result] = []


def pytest_generate_tests(metafunc):
    if "chaos_round" in metafunc.fixturenames:
        rounds = int(os.environ.get("KCM_CHAOS_ROUNDS", "1"))
        metafunc.parametrize("chaos_round", range(1, rounds + 1), ids=lambda n: f"round{n}")


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    table = TABLE_HEAD + "\n" + "\n".join(r.row() for r in RESULTS)
    terminalreporter.write_sep("=", "kcm chaos: fault x missing x duplicates x recovery")
    terminalreporter.write_line(table)
    out = ROOT / ".local" / "chaos"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(table + "\n")


@pytest.fixture
def record():
    def add(result: Result) -> Result:
        RESULTS.append(result)
        return result
    return add


@pytest.fixture
def private_redis():
    from tests.chaos.services import PrivateRedis

    service = PrivateRedis().start()
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def private_kafka():
    from tests.chaos.services import PrivateKafka

    service = PrivateKafka()
    try:
        yield service.start()
    finally:
        service.close()


@pytest.fixture
def private_postgres():
    from tests.chaos.services import PrivatePostgres

    service = PrivatePostgres()
    try:
        yield service.start()
    finally:
        service.close()


def create_topic(bootstrap: str, partitions: int = 4) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    from tests.conftest import _wait_topic_ready

    admin = AdminClient({"bootstrap.servers": bootstrap})
    name = f"kcm-chaos-{uuid.uuid4().hex[:10]}"
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
    _wait_topic_ready(admin, name, partitions)
    return name
