"""The consumer page's history and dead-letter forms over the real database and Redis (rq): a version's diff, the
admin's rollback, an operator's replay and discard of a dead letter, each audited like the API call."""
from __future__ import annotations

from types import SimpleNamespace

import redis

from processors.context import ProcessorContext
from processors.dead_letters import DeadLetterQueue
from schema.models import AuditEvent
from tests.integration.api.conftest import ADMIN_TOKEN


class Message:
    """What confluent-kafka hands a processor, for one record."""

    def __init__(self, topic: str, partition: int, offset: int, value: bytes):
        self._values = (topic, partition, offset, value)

    def topic(self): return self._values[0]
    def partition(self): return self._values[1]
    def offset(self): return self._values[2]
    def value(self): return self._values[3]
    def key(self): return None
    def headers(self): return None
    def timestamp(self): return (1, 1_700_000_000_000)


def dead_letter(app, consumer: dict, offset: int) -> str:
    """A dead letter of the consumer's first processor, sent as a worker's pipeline sends one."""
    kcm = app.extensions["kcm"]
    processor = consumer["downstream_processors"][0]
    client = redis.Redis.from_url(kcm.settings.redis_url)  # rq: bytes, no decode_responses
    context = ProcessorContext(settings=kcm.settings, consumer_id=consumer["id"], bootstrap_servers="127.0.0.1:19092",
                               topic=consumer["topic"], redis=client)
    spec = SimpleNamespace(id=processor["id"], processor_type=processor["processor_type"], config=processor["config"])
    policy = SimpleNamespace(dead_letter_retry_intervals=(), dead_letter_max_retries=0)
    return DeadLetterQueue(context).send(spec, policy, Message(consumer["topic"], 0, offset, b"poison"),
                                         ValueError("the sink refused it"), attempts=3)


def audited(app, action: str) -> list[AuditEvent]:
    with app.extensions["kcm"].audit.sessions() as session:
        return list(session.query(AuditEvent).filter_by(action=action, outcome="allowed").order_by(AuditEvent.id))


def test_a_version_diff_shows_the_change_and_the_admin_rolls_it_back(app, dashboard, keys, consumer, client):
    cid = consumer["id"]
    assert client.patch(f"/consumers/{cid}/", json={"client_id": "changed-by-api"}).status_code == 200
    operator = dashboard(keys["operator"]["token"])
    page = operator.get(f"/consumers/{cid}/").get_data(as_text=True)
    assert "Configuration versions (2)" in page and "Roll back to this" not in page  # the admin's form
    diff = operator.get(f"/consumers/{cid}/versions/2/diff").get_data(as_text=True)
    assert "<code>client_id</code>" in diff and "changed-by-api" in diff
    admin = dashboard(ADMIN_TOKEN)
    assert "Roll back to this" in admin.get(f"/consumers/{cid}/").get_data(as_text=True)
    response = admin.post_form(f"/consumers/{cid}/", f"/consumers/{cid}/rollback", {"version": "1"})
    assert response.status_code == 303
    assert client.get(f"/consumers/{cid}/").json["client_id"] is None
    assert "Rolled back to version 1" in admin.get(f"/consumers/{cid}/").get_data(as_text=True)
    assert [e.target_id for e in audited(app, "consumer.rollback")] == [cid]
    missing = admin.post_form(f"/consumers/{cid}/", f"/consumers/{cid}/rollback", {"version": "99"})
    assert missing.status_code == 303  # the refusal is shown on the page, not a 500
    assert "has no version 99" in admin.get(f"/consumers/{cid}/").get_data(as_text=True)


def test_an_operator_replays_one_dead_letter_and_discards_another(app, dashboard, keys, consumer, client):
    cid = consumer["id"]
    replayed, discarded = dead_letter(app, consumer, 3), dead_letter(app, consumer, 7)
    viewer = dashboard(keys["viewer"]["token"])
    listed = viewer.get(f"/consumers/{cid}/").get_data(as_text=True)
    assert "Dead letters (2)" in listed and "the sink refused it" in listed and ">Replay<" not in listed
    operator = dashboard(keys["operator"]["token"])
    assert ">Replay<" in operator.get(f"/consumers/{cid}/").get_data(as_text=True)
    page = f"/consumers/{cid}/"
    assert operator.post_form(page, f"/consumers/{cid}/dead-letters/{replayed}/replay").status_code == 303
    history = client.get(f"/consumers/{cid}/dead-letters/{replayed}/").json["history"]
    assert [entry["event"] for entry in history][-1] == "replay_requested"
    assert operator.post_form(page, f"/consumers/{cid}/dead-letters/{discarded}/discard").status_code == 303
    assert client.get(f"/consumers/{cid}/dead-letters/{discarded}/").status_code == 404
    after = operator.get(page).get_data(as_text=True)
    assert "Dead letters (1)" in after and f"Dead letter {discarded} discarded" in after
    assert [(e.target_id, e.principal_id) for e in audited(app, "dead_letter.replay")] == \
        [(replayed, keys["operator"]["id"])]
    assert [e.target_id for e in audited(app, "dead_letter.delete")] == [discarded]
    gone = operator.post_form(page, f"/consumers/{cid}/dead-letters/{discarded}/discard")
    assert gone.status_code == 303 and "not found" in operator.get(page).get_data(as_text=True)
