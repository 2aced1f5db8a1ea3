"""Offsets reset and delete end to end: the API, a real supervisor, real workers on the real Kafka.

A consumer that read 1,000 messages: a reset while it runs is a 409 naming the replica; stopped, a dry run to
earliest shows 1,000 -> 0 and changes nothing (the commit read independently); the real reset, then a start,
and the sink receives the 1,000 again. DELETE, then a start, follows auto_offset_reset (earliest: everything
again; latest: only what is new). An exactly-once database_sync resumes exactly at the reset point (every row
it proposes to the table is counted by a trigger)."""
from __future__ import annotations

import uuid
from collections import Counter

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from api.context import EXTENSION
from schema.settings import Settings
from tests.integration.runtime import conftest as runtime_conftest
from tests.support.kafka import committed_offsets, high_watermarks, produce, wait_for

runtime = runtime_conftest.runtime  # the runtime tests' own fixture: a real supervisor on PostgreSQL




@pytest.fixture
def api(runtime, pg_url, redis_test_url):
    from api import create_app
    from tests.integration.api.conftest import ADMIN_TOKEN, AuthenticatedClient

    app = create_app(Settings.from_env({**runtime.env, "KCM_DATABASE_URL": pg_url, "KCM_REDIS_URL": redis_test_url,
                                        "KCM_BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN}))
    app.test_client_class = AuthenticatedClient
    yield app.test_client()
    app.extensions[EXTENSION].close()


def create(api, runtime, topic: str, processors: list[dict], **fields) -> str:
    response = api.post("/consumers/", json={"bootstrap_servers": [runtime.bootstrap], "topic": topic,
                                             "consumer_group": f"kcm-rt-{topic}", "downstream_processors": processors,
                                             **fields})
    assert response.status_code == 201, response.json
    return response.json["id"]


def collector(out) -> list[dict]:
    return [{"processor_type": "test_collector", "config": {"path": str(out)}}]


def run_until(api, runtime, cid: str, done, message: str) -> None:
    """Start the consumer, wait for ``done()``, stop it and wait until its replica is STOPPED."""
    assert api.post(f"/consumers/{cid}/start/").status_code == 200
    wait_for(done, timeout=60, message=message)
    assert api.post(f"/consumers/{cid}/stop/").status_code == 200
    runtime.wait_state(cid, "STOPPED")


def reset(api, cid: str, **body):
    return api.post(f"/consumers/{cid}/offsets/reset/", json=body)


def test_reset_to_earliest_redelivers_the_1000_and_is_refused_while_running(api, runtime, topic_factory, tmp_path):
    topic = topic_factory(partitions=2)
    out = tmp_path / "collected.txt"
    cid = create(api, runtime, topic, collector(out))
    produce(runtime.bootstrap, topic, 1000)
    runtime.start_supervisor()
    assert api.post(f"/consumers/{cid}/start/").status_code == 200
    wait_for(lambda: len(runtime.collected(out)) >= 1000, timeout=60, message="the 1,000 delivered")

    refused = reset(api, cid, to="earliest", dry_run=False)
    assert refused.status_code == 409, refused.json
    assert "replica 0" in refused.json["message"] and "0" in refused.json["errors"]["replicas"]

    assert api.post(f"/consumers/{cid}/stop/").status_code == 200
    runtime.wait_state(cid, "STOPPED")
    highs = high_watermarks(runtime.bootstrap, topic)
    wait_for(lambda: committed_offsets(runtime.bootstrap, f"kcm-rt-{topic}", topic) == highs, timeout=20,
             message="the warm stop committed everything")

    planned = reset(api, cid, to="earliest")
    assert planned.status_code == 200 and planned.json["dry_run"] is True, planned.json
    assert sum(p["from"] for p in planned.json["partitions"]) == 1000
    assert sum(p["to"] for p in planned.json["partitions"]) == 0
    assert committed_offsets(runtime.bootstrap, f"kcm-rt-{topic}", topic) == highs  # the dry run changed nothing

    done = reset(api, cid, to="earliest", dry_run=False)
    assert done.status_code == 200 and done.json == {**planned.json, "dry_run": False}, done.json
    assert committed_offsets(runtime.bootstrap, f"kcm-rt-{topic}", topic) == {0: 0, 1: 0}
    assert api.post(f"/consumers/{cid}/start/").status_code == 200
    wait_for(lambda: len(runtime.collected(out)) >= 2000, timeout=60, message="the 1,000 delivered again")
    counts = Counter(runtime.collected(out))
    assert set(counts.values()) == {2} and len(counts) == 1000


def test_delete_then_start_follows_auto_offset_reset(api, runtime, topic_factory, tmp_path):
    topic = topic_factory(partitions=2)
    out = tmp_path / "collected.txt"
    cid = create(api, runtime, topic, collector(out))
    produce(runtime.bootstrap, topic, 200)
    runtime.start_supervisor()
    run_until(api, runtime, cid, lambda: len(runtime.collected(out)) >= 200, "the 200 delivered")

    forgotten = api.delete(f"/consumers/{cid}/offsets/")
    assert forgotten.status_code == 200, forgotten.json
    assert sum(p["from"] for p in forgotten.json["partitions"]) == 200
    # earliest: everything again
    run_until(api, runtime, cid, lambda: len(runtime.collected(out)) >= 400, "the 200 delivered again")
    assert set(Counter(runtime.collected(out)).values()) == {2}

    assert api.patch(f"/consumers/{cid}/", json={"auto_offset_reset": "latest"}).status_code == 200
    assert api.delete(f"/consumers/{cid}/offsets/").status_code == 200
    old = {p: high for p, high in high_watermarks(runtime.bootstrap, topic).items()}
    assert api.post(f"/consumers/{cid}/start/").status_code == 200

    def new_messages_arrive():  # produced until the worker, positioned at the end, delivers some
        produce(runtime.bootstrap, topic, 10, key_prefix="new")
        return len(runtime.collected(out)) > 400
    wait_for(new_messages_arrive, timeout=60, interval=0.5, message="new messages delivered")
    later = runtime.collected(out)[400:]
    assert later and all(offset >= old[partition] for partition, offset in later), later[:5]


@pytest.fixture
def sync_table(pg_url):
    """A database_sync target in kcm's test database, whose trigger counts every row a committed INSERT proposed
    (conflicting re-deliveries included: a BEFORE trigger fires before ON CONFLICT decides)."""
    from processors.database_target import target_ddl

    table = f"offsets_sink_{uuid.uuid4().hex[:8]}"
    dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(target_ddl(f'"{table}"', "bytea"))
        cur.execute(f'CREATE TABLE "{table}_proposed" (partition integer, "offset" bigint)')
        cur.execute(f'CREATE FUNCTION "{table}_fn"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
                    f'INSERT INTO "{table}_proposed" VALUES (NEW.partition, NEW."offset"); RETURN NEW; END $$')
        cur.execute(f'CREATE TRIGGER proposed BEFORE INSERT ON "{table}" FOR EACH ROW EXECUTE FUNCTION "{table}_fn"()')

    def count(sql: str) -> int:
        with conn.cursor() as cur:
            cur.execute(sql.format(table=f'"{table}"', proposed=f'"{table}_proposed"'))
            return cur.fetchone()[0]

    yield table, count
    with conn.cursor() as cur:
        cur.execute(f'DROP TABLE IF EXISTS "{table}", "{table}_proposed" CASCADE; DROP FUNCTION IF EXISTS "{table}_fn"()')
    conn.close()


def test_an_exactly_once_database_sync_resumes_exactly_at_the_reset_point(api, runtime, topic_factory, sync_table):
    table, count = sync_table
    topic = topic_factory(partitions=2)
    cid = create(api, runtime, topic, [{"processor_type": "database_sync",
                                        "config": {"table": table, "exactly_once": True}}])
    produce(runtime.bootstrap, topic, 300)
    runtime.start_supervisor()
    run_until(api, runtime, cid, lambda: count("SELECT count(*) FROM {table}") >= 300, "the 300 rows written")
    highs = high_watermarks(runtime.bootstrap, topic)

    view = api.get(f"/consumers/{cid}/offsets/").json
    pid = view["exactly_once_processors"][0]["id"]
    assert {p["partition"]: p["processor_offsets"][pid] for p in view["partitions"]} == highs

    done = reset(api, cid, to="offset", offset=40, dry_run=False)
    assert done.status_code == 200, done.json
    assert {p["partition"]: (p["from"], p["to"]) for p in done.json["partitions"]} == {
        p: (high, min(40, high)) for p, high in highs.items()}
    view = api.get(f"/consumers/{cid}/offsets/").json
    assert {p["partition"]: (p["committed"], p["processor_offsets"][pid]) for p in view["partitions"]} == {
        p: (min(40, high), min(40, high)) for p, high in highs.items()}

    proposed_before = count("SELECT count(*) FROM {proposed}")
    expected_again = sum(high - min(40, high) for high in highs.values())
    run_until(api, runtime, cid, lambda: count("SELECT count(*) FROM {proposed}") >= proposed_before + expected_again,
              "the messages from offset 40 proposed again")
    assert count("SELECT count(*) FROM {proposed}") == proposed_before + expected_again  # none from before 40
    assert count('SELECT count(*) FROM {proposed} WHERE "offset" < 40') == 300 - expected_again
    assert count("SELECT count(*) FROM {table}") == 300  # the re-read ones were no-ops
    view = api.get(f"/consumers/{cid}/offsets/").json
    assert {p["partition"]: p["processor_offsets"][pid] for p in view["partitions"]} == highs
