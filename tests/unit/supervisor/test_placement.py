"""Placement labels (schema/placement.py) and the several-supervisor settings: pure logic."""
from __future__ import annotations

import pytest

from schema.placement import LabelError, matches, normalize, parse
from schema.settings import Settings, SettingsError


def test_labels_parse_and_normalize_to_a_map():
    assert parse("zone=a, disk=ssd") == {"zone": "a", "disk": "ssd"}
    assert parse("") == {}
    assert normalize(["zone=a"]) == normalize({"zone": "a"}) == {"zone": "a"}
    assert normalize([]) is None and normalize(None) is None


@pytest.mark.parametrize("bad", [["zone"], ["zone=a", "zone=b"], {"zone": 1}, "zone=a", {"": "a"},
                                 {"k": "v" * 64}, [f"k{i}=v" for i in range(17)]])
def test_bad_labels_are_refused(bad):
    with pytest.raises(LabelError):
        normalize(bad)


def test_a_placement_runs_only_where_every_label_is_carried():
    assert matches(None, {}) and matches({}, {"zone": "a"})
    assert matches({"zone": "a"}, {"zone": "a", "disk": "ssd"})
    assert not matches({"zone": "a"}, {"zone": "b"}) and not matches({"zone": "a"}, None)


def test_supervisor_settings_defaults_and_errors():
    s = Settings.from_env({})
    assert s.supervisor_lease_ttl == 10 and s.max_workers == 0 and s.supervisor_labels == {}
    assert Settings.from_env({"KCM_SUPERVISOR_LABELS": "zone=a"}).supervisor_labels == {"zone": "a"}
    with pytest.raises(SettingsError, match="KCM_SUPERVISOR_LEASE_TTL"):
        Settings.from_env({"KCM_SUPERVISOR_LEASE_TTL": "0.5"})
    with pytest.raises(SettingsError, match="KCM_SUPERVISOR_LABELS"):
        Settings.from_env({"KCM_SUPERVISOR_LABELS": "zone"})
