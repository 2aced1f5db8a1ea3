"""The supervisor finds its forgotten state hashes by key; the key format lives in schema.keys only."""
from __future__ import annotations


def test_replica_state_keys_round_trip_and_other_keys_are_ignored():
    from schema import keys

    assert keys.parse_replica_state_key(keys.replica_state_key("abc-1", 4)) == ("abc-1", 4)
    assert keys.parse_replica_state_key(keys.heartbeat_key("abc-1", 4)) is None
    assert keys.parse_replica_state_key(keys.supervisor_key("host")) is None
