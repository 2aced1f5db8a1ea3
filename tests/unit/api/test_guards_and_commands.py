"""Pure pieces: what the request guard calls unstorable, and the command fields (fakeredis: pure logic)."""
from __future__ import annotations

import math

import fakeredis
import redis

from api.guards import _unstorable
from api.services.commands import CommandPublisher
from schema import keys
from schema.states import CommandAction


def test_unstorable_values_are_found_with_their_path():
    assert _unstorable({"a": "fine", "b": [1, 2.5, {"c": True}]}) is None
    assert _unstorable({"a": ["x", "y\x00"]})[0] == "a.1"
    assert _unstorable({"k\x00": 1})[0] == "k\x00"
    assert _unstorable({"n": math.nan})[0] == "n"
    assert _unstorable({"n": [math.inf]})[0] == "n.0"
    assert _unstorable("\x00") == ("", "NUL characters (\\u0000) are not allowed.")


def test_nesting_beyond_the_limit_is_unstorable_without_recursion():
    from api.guards import MAX_JSON_DEPTH

    shallow = deep = []
    for _ in range(MAX_JSON_DEPTH - 1):
        deep.append([])
        deep = deep[0]
    assert _unstorable(shallow) is None
    very_deep = current = {}
    for _ in range(5_000):
        current["a"] = {}
        current = current["a"]
    path, reason = _unstorable(very_deep)
    assert "deeper" in reason and path.count("a") == MAX_JSON_DEPTH


def test_publish_appends_the_contract_fields():
    client = fakeredis.FakeRedis(decode_responses=True)
    entry = CommandPublisher(client).publish("abc", 3, CommandAction.RESTART)
    ((entry_id, fields),) = client.xrange(keys.COMMAND_STREAM)
    assert entry_id == entry
    assert set(fields) == {"consumer_id", "generation", "action", "ts"}
    assert (fields["consumer_id"], fields["generation"], fields["action"]) == ("abc", "3", "restart")
    assert float(fields["ts"]) > 0


def test_publish_failure_returns_none_and_does_not_raise():
    class Down:
        def xadd(self, *args, **kwargs):
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    assert CommandPublisher(Down()).publish("abc", 1, CommandAction.START) is None
