"""The CLI's pure pieces: API field errors as lines, tables, and where the address and token come from."""
from __future__ import annotations

import pytest

from api.cli import profiles
from api.cli.client import field_errors, path
from api.cli.errors import BadInput
from api.cli.output import table


def test_nested_field_errors_become_one_dotted_line_each():
    errors = {"json": {"broker_port": ["Must be greater than or equal to 1."],
                       "downstream_processors": {"1": {"config": {"file_path": ["Missing data.", "Twice."]}}}},
              "checks": {"cluster topic": ["topic orders does not exist"]}}
    assert field_errors(errors) == [
        "json.broker_port: Must be greater than or equal to 1.",
        "json.downstream_processors.1.config.file_path: Missing data. Twice.",
        "checks.cluster topic: topic orders does not exist",
    ]


def test_a_path_quotes_each_part():
    assert path("consumers", "a/b", "status") == "/consumers/a%2Fb/status/"


def test_a_table_aligns_columns_and_shows_nothing_as_a_dash():
    rows = [{"name": "orders", "replicas": 2, "security": None}, {"name": "x", "replicas": 10, "security": {}}]
    assert table(rows, ("name", "replicas", "security")).splitlines() == [
        "NAME    REPLICAS  SECURITY",
        "orders  2         -",
        "x       10        -",
    ]


@pytest.fixture
def profile_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    profiles.save({"current": "dev", "profiles": {"dev": {"api": "http://dev:8000", "token": "t-dev"},
                                                  "prod": {"api": "https://prod/", "token": "t-prod"}}})
    return tmp_path / "kcm" / "profiles.yaml"


def test_flags_then_named_profile_then_environment_then_current_profile(profile_file):
    env = {"KCM_API_URL": "http://env:1", "KCM_TOKEN": "t-env"}
    assert profiles.resolve(None, None, None, {}) == ("http://dev:8000", "t-dev")
    assert profiles.resolve(None, None, None, env) == ("http://env:1", "t-env")
    assert profiles.resolve(None, None, "prod", env) == ("https://prod", "t-prod")
    assert profiles.resolve("http://flag:2", None, "prod", env) == ("http://flag:2", "t-prod")
    assert profiles.resolve(None, None, None, {"KCM_API_URL": "http://env:1"}) == ("http://env:1", "t-dev")


def test_a_profile_file_others_can_read_is_refused(profile_file):
    profile_file.chmod(0o640)
    with pytest.raises(BadInput, match="mode 0640"):
        profiles.resolve(None, None, None, {})
    assert profiles.resolve("http://a", "t", None, {}) == ("http://a", "t")  # nothing needed from the file


def test_no_file_means_the_local_api_and_no_token(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert profiles.resolve(None, None, None, {}) == ("http://127.0.0.1:8000", None)
    with pytest.raises(BadInput, match="no profile file"):
        profiles.resolve(None, None, "prod", {})


def test_the_table_views_of_a_consumer_its_status_and_offsets():
    from api.cli.consumers import consumer_text
    from api.cli.offsets import offsets_text
    from api.cli.status import status_text
    from tests.unit.cli.test_apply_plan import CURRENT

    text = consumer_text({**CURRENT, "security": {"security.protocol": "SSL"}})
    assert "brokers:           k1:9092" in text and "security: {\"security.protocol\":\"SSL\"}" in text
    assert text.splitlines()[-2].split()[:3] == ["0", "file_sink", "retry"]

    status = {"id": "c1", "status": "ACTIVE", "status_reason": None, "state": "RUNNING", "desired_state": "running",
              "generation": 3, "health": {"verdict": "OK", "reason": "caught up", "since": None},
              "lag": {"sampled_at": "t", "total_messages": 0, "max_seconds": 0.0, "partitions": []},
              "throughput": {"messages_per_second": 12.5, "bytes_per_second": 100.0, "window_seconds": 60},
              "replicas": [{"replica": 0, "state": "RUNNING", "alive": True, "pid": 42, "host": "h",
                            "restarts": 0, "messages": 7, "errors": 0, "partitions": ["orders:0", "orders:1"],
                            "last_error": None}]}
    lines = status_text(status).splitlines()
    assert lines[2] == "state:      RUNNING (desired running, generation 3)"
    assert lines[4] == "lag:        0 messages, oldest unconsumed 0.0 s (sampled t)"
    assert lines[5] == "throughput: 12.5 msg/s, 100 B/s"
    assert lines[-1].split() == ["0", "RUNNING", "yes", "42", "h", "0", "7", "0", "0,1", "-"]
    assert "no sample yet" in status_text({**status, "lag": None, "throughput": None, "replicas": []})

    offsets = {"consumer_id": "c1", "topic": "orders", "total_lag": 3, "exactly_once_processors": [],
               "partitions": [{"partition": 0, "committed": 4, "low_watermark": 0, "high_watermark": 7, "lag": 3,
                               "processor_offsets": {}}]}
    lines = offsets_text(offsets).splitlines()
    assert lines[2] == "total_lag:               3"
    assert lines[-1].split() == ["0", "4", "0", "7", "3", "-"]
