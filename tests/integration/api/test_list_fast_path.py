"""GET /consumers/ answers from Core rows without a marshmallow dump: its items must stay exactly what
``ConsumerOut(many=True).dump()`` of the ORM objects gives, with the same total, on PostgreSQL and on SQLite."""
from __future__ import annotations

import json

import flask_smorest
import pytest
import sqlalchemy as sa

from api.context import EXTENSION
from api.schemas.consumers import ConsumerOut
from schema.states import ConsumerStatus, DesiredState
from tests.integration.api.conftest import consumer_data, make_app

COLLECTOR = {"processor_type": "test_collector", "on_error": "retry"}


def collector(path: str, **fields) -> dict:
    return {**COLLECTOR, "config": {"path": path}, **fields}


def seed_varied_consumers(kcm) -> list:
    """Every shape a field can take: both broker forms, security set or not, zero to three processors
    (given out of pipeline order, with nested config and every on_error), each status and desired state."""
    made = [
        kcm.consumers.create(consumer_data(topic="alpha", consumer_group="g1")),
        kcm.consumers.create(consumer_data(
            broker_ip=None, broker_port=None, bootstrap_servers=["k1:9092", "[::1]:9093"], topic="alpha",
            consumer_group="g2", client_id="client-é", replicas=3, auto_offset_reset="latest",
            security={"security.protocol": "SASL_SSL", "sasl.password": "${env:KCM_SECRET_KAFKA_PASSWORD}",
                      "enable.ssl.certificate.verification": False},
            downstream_processors=[collector("/tmp/c", position=7, on_error="skip"),
                                   collector("/tmp/a", position=1, on_error="dead_letter"),
                                   collector("/tmp/b", position=3)])),
        kcm.consumers.create(consumer_data(topic="beta", consumer_group="g1",
                                           downstream_processors=[collector("/tmp/only")])),
    ]
    for n in range(9):  # enough rows for several pages
        made.append(kcm.consumers.create(consumer_data(
            topic="beta" if n % 2 else "gamma", consumer_group=f"group-{n % 3}",
            downstream_processors=[collector(f"/tmp/{n}", config={"path": f"/tmp/{n}", "x": {"y": [1, 2.5]}})]
            if n % 3 else [])))
    kcm.consumers.start(made[1].id)
    kcm.consumers.start(made[4].id)
    with kcm.engine.begin() as conn:  # the supervisor writes status back; do what it would
        conn.execute(sa.text("UPDATE consumers SET status='ACTIVE' WHERE topic='alpha'"))
        conn.execute(sa.text("UPDATE consumers SET status='ERROR' WHERE consumer_group='group-2'"))
    return made


FILTERS = [
    {},
    {"topic": "beta"},
    {"consumer_group": "g1"},
    {"status": ConsumerStatus.ACTIVE},
    {"status": ConsumerStatus.ERROR, "topic": "gamma"},
    {"desired_state": DesiredState.RUNNING},
    {"desired_state": DesiredState.STOPPED, "consumer_group": "group-1", "topic": "beta"},
    {"topic": "nothing-here"},
    {"topic": None, "status": None},  # absent filters arrive as None from nowhere, but must not filter
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(sorted(f)) or "none")
def test_dumped_list_equals_the_schema_dump_of_the_orm_objects(kcm, filters):
    seed_varied_consumers(kcm)
    for first_item, page_size in [(0, 10), (0, 100), (0, 1), (1, 2), (3, 4), (10, 10), (12, 5), (10**30, 10)]:
        objects, total = kcm.consumers.list(dict(filters), first_item, page_size)
        dumped, dumped_total = kcm.consumers.page(dict(filters), first_item, page_size)
        assert dumped_total == total
        assert dumped == ConsumerOut(many=True).dump(objects), (filters, first_item, page_size)


def test_dumped_list_keeps_processors_in_pipeline_order(kcm):
    made = seed_varied_consumers(kcm)
    dumped, total = kcm.consumers.page({"consumer_group": "g2"}, 0, 10)
    assert total == 1 and dumped[0]["id"] == str(made[1].id)
    assert [p["config"]["path"] for p in dumped[0]["downstream_processors"]] == ["/tmp/a", "/tmp/b", "/tmp/c"]
    assert [p["position"] for p in dumped[0]["downstream_processors"]] == [1, 3, 7]


def test_an_empty_table_lists_nothing_with_a_zero_total(kcm):
    assert kcm.consumers.page({}, 0, 10) == ([], 0)


def test_http_list_body_and_header_are_what_the_schema_dump_would_give(database_url, redis_client, redis_test_url):
    app = make_app(database_url, redis_test_url)
    try:
        kcm = app.extensions[EXTENSION]
        seed_varied_consumers(kcm)
        client = app.test_client()
        for query, filters, first_item, page_size in [
            ("", {}, 0, 10),
            ("?page=2&page_size=5", {}, 5, 5),
            ("?topic=beta&page_size=2&page=2", {"topic": "beta"}, 2, 2),
            ("?status=ACTIVE&desired_state=running", {"status": ConsumerStatus.ACTIVE,
                                                      "desired_state": DesiredState.RUNNING}, 0, 10),
            ("?page=99", {}, 980, 10),
        ]:
            response = client.get(f"/consumers/{query}")
            cached = client.get(f"/consumers/{query}")  # the same page again, now from the page cache
            objects, total = kcm.consumers.list(filters, first_item, page_size)
            with app.app_context():  # the bytes flask-smorest's dump + jsonify produced before the fast path
                expected = app.json.response(ConsumerOut(many=True).dump(objects))
            page = first_item // page_size + 1
            expected.headers["X-Pagination"] = json.dumps(  # the header text flask-smorest itself writes
                flask_smorest.Blueprint._make_pagination_metadata(page, page_size, total))
            for answer in (response, cached):
                assert answer.status_code == 200 and answer.mimetype == "application/json"
                assert answer.get_data() == expected.get_data(), query
                # every response also carries its own X-Request-ID (api/auth/guard.py)
                assert answer.headers["X-Request-ID"]
                headers = [(name, value) for name, value in answer.headers.items() if name != "X-Request-ID"]
                assert headers == list(expected.headers.items()), query
            assert json.loads(response.headers["X-Pagination"])["total"] == total
        assert len(kcm.consumers.page_cache) == 5
    finally:
        app.extensions[EXTENSION].close()


def test_x_pagination_header_is_unchanged(client, create_consumer):
    for n in range(3):
        create_consumer(topic=f"t-{n}")
    client.get("/consumers/?page=2&page_size=2")  # the assertions below read the cached page
    pagination = json.loads(client.get("/consumers/?page=2&page_size=2").headers["X-Pagination"])
    assert pagination == {"total": 3, "total_pages": 2, "first_page": 1, "last_page": 2, "page": 2,
                          "previous_page": 1}
    assert json.loads(client.get("/consumers/?page=5&page_size=2").headers["X-Pagination"]) == {
        "total": 3, "total_pages": 2, "first_page": 1, "last_page": 2}
    assert json.loads(client.get("/consumers/?topic=none").headers["X-Pagination"]) == {
        "total": 0, "total_pages": 0}


def test_status_reads_the_consumer_without_its_processors_and_still_404s(client, create_consumer):
    consumer = create_consumer(downstream_processors=[collector("/tmp/s")], replicas=2)
    body = client.get(f"/consumers/{consumer['id']}/status/").json
    assert body["id"] == consumer["id"] and body["status"] == "INACTIVE" and body["desired_state"] == "stopped"
    assert body["generation"] == 1 and [r["replica"] for r in body["replicas"]] == [0, 1]
    assert client.get("/consumers/00000000-0000-0000-0000-000000000000/status/").status_code == 404


def test_pagination_metadata_is_flask_smorests_own():
    import flask_smorest

    from api.views.consumers import Blueprint

    for item_count in (0, 1, 9, 10, 11, 500):
        for page_size in (1, 3, 10, 100):
            for page in (1, 2, 3, 50, 51, 10**6):
                ours = Blueprint._make_pagination_metadata(page, page_size, item_count)
                theirs = flask_smorest.Blueprint._make_pagination_metadata(page, page_size, item_count)
                assert ours == theirs and list(ours) == list(theirs), (page, page_size, item_count)


def test_argument_schemas_are_reused_across_requests(client, create_consumer):
    from api.views.consumers import blp

    create_consumer(topic="reuse")
    for _ in range(3):
        assert client.get("/consumers/?topic=reuse").json[0]["topic"] == "reuse"
    assert client.get("/consumers/?status=SLEEPING").status_code == 422  # validation still runs every time
    instances = blp.ARGUMENTS_PARSER._instances
    assert set(type(schema).__name__ for schema in instances.values()) >= {"ConsumerQuery", "ConsumerIn"}
    assert all(type(schema) is cls for cls, schema in instances.items())
