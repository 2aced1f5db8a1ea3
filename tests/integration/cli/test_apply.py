"""`kcm consumers apply|get|edit|versions|diff|rollback`: a consumer's configuration kept in a file, applied by name."""
from __future__ import annotations

import sys

import yaml

BODY = {
    "name": "cli-orders",
    "broker_ip": "127.0.0.1",
    "broker_port": 19092,
    "topic": "orders",
    "consumer_group": "cli-billing",
    "downstream_processors": [
        {"processor_type": "test_collector", "config": {"path": "/tmp/kcm-cli-a.log"}},
        {"processor_type": "test_collector", "config": {"path": "/tmp/kcm-cli-b.log"}, "on_error": "skip"},
    ],
}


def _versions(live_api, name):
    return [v["version"] for v in live_api.get(f"/consumers/{name}/versions/")]


def test_apply_creates_then_get_yaml_applies_back_unchanged_without_a_new_version(cli, live_api, consumer_file):
    created = cli("consumers", "apply", "-f", consumer_file(BODY), "-o", "table")
    assert created.returncode == 0, created.err
    assert created.out.startswith("consumer cli-orders created (id ")
    consumer = live_api.get("/consumers/cli-orders/")
    assert consumer["consumer_group"] == "cli-billing"
    assert [p["config"]["path"] for p in consumer["downstream_processors"]] == ["/tmp/kcm-cli-a.log",
                                                                                 "/tmp/kcm-cli-b.log"]
    assert _versions(live_api, "cli-orders") == [1]

    printed = cli("consumers", "get", "cli-orders", "-o", "yaml")
    assert printed.returncode == 0, printed.err
    assert yaml.safe_load(printed.out)["id"] == consumer["id"]
    again = cli("consumers", "apply", "-f", "-", "-o", "table", input=printed.out)
    assert again.returncode == 0, again.err
    assert again.out.strip() == "consumer cli-orders unchanged"
    assert _versions(live_api, "cli-orders") == [1]
    assert live_api.get("/consumers/cli-orders/") == consumer


def test_apply_changes_fields_and_reconciles_processors_by_place_and_type(cli, live_api, consumer_file):
    assert cli("consumers", "apply", "-f", consumer_file(BODY)).returncode == 0
    before = live_api.get("/consumers/cli-orders/")["downstream_processors"]
    changed = {**BODY, "replicas": 2, "downstream_processors": [
        {"processor_type": "test_collector", "config": {"path": "/tmp/kcm-cli-a2.log"}},  # same type: updated
        {"processor_type": "file_sink", "config": {"file_path": "b.log"}},  # another type: replaced
        {"processor_type": "test_collector", "config": {"path": "/tmp/kcm-cli-c.log"}, "on_error": "dead_letter"},
    ]}
    path = consumer_file(changed, "changed.yaml")

    dry = cli("consumers", "apply", "-f", path, "--dry-run", "-o", "table")
    assert dry.returncode == 0, dry.err
    assert dry.out.splitlines() == [
        "consumer cli-orders would be configured",
        "  changed replicas",
        "  removed processor 1 (test_collector)",
        "  changed processor 0 (test_collector): config",
        "  added processor 1 (file_sink)",
        "  added processor 2 (test_collector)",
    ]
    assert live_api.get("/consumers/cli-orders/")["downstream_processors"] == before  # a dry run changes nothing

    done = cli("consumers", "apply", "-f", path)  # piped: JSON
    assert done.returncode == 0, done.err
    assert done.json["outcome"] == "configured" and done.json["dry_run"] is False
    after = live_api.get("/consumers/cli-orders/")
    assert after["replicas"] == 2
    processors = after["downstream_processors"]
    assert [(p["processor_type"], p["position"], p["on_error"]) for p in processors] == [
        ("test_collector", 0, "retry"), ("file_sink", 1, "retry"), ("test_collector", 2, "dead_letter")]
    assert processors[0]["id"] == before[0]["id"]  # updated in place: its dead letters stay replayable
    assert processors[0]["config"]["path"] == "/tmp/kcm-cli-a2.log"
    assert before[1]["id"] not in {p["id"] for p in processors}

    # and the file is now the truth: applying it again changes nothing
    assert cli("consumers", "apply", "-f", path, "-o", "table").out.strip() == "consumer cli-orders unchanged"
    # fewer processors in the file: the extra ones go
    fewer = cli("consumers", "apply", "-f", consumer_file({**changed, "downstream_processors":
                                                           changed["downstream_processors"][:1]}, "fewer.yaml"))
    assert fewer.returncode == 0, fewer.err
    assert [p["id"] for p in live_api.get("/consumers/cli-orders/")["downstream_processors"]] == [before[0]["id"]]


def test_versions_diff_and_rollback(cli, live_api, consumer_file):
    assert cli("consumers", "apply", "-f", consumer_file(BODY)).returncode == 0
    assert cli("consumers", "apply", "-f", consumer_file({**BODY, "replicas": 3}, "r3.yaml")).returncode == 0

    listed = cli("consumers", "versions", "cli-orders")
    assert listed.returncode == 0, listed.err
    assert [(v["version"], v["summary"]) for v in listed.json] == [(2, "changed replicas"), (1, "created")]
    one = cli("consumers", "versions", "cli-orders", "1")
    assert one.json["config"]["replicas"] == 1
    diff = cli("consumers", "diff", "cli-orders", "2", "-o", "table")
    assert diff.returncode == 0, diff.err
    assert diff.out.splitlines()[0] == "version 1 -> 2:"
    assert any(line.split()[:4] == ["replicas", "changed", "1", "3"] for line in diff.out.splitlines())

    back = cli("consumers", "rollback", "cli-orders", "--to", "1", "-o", "table")
    assert back.returncode == 0, back.err
    assert back.out.startswith("cli-orders: configuration restored to version 1")
    assert live_api.get("/consumers/cli-orders/")["replicas"] == 1
    assert _versions(live_api, "cli-orders") == [3, 2, 1]


def test_edit_opens_the_editor_and_applies_what_was_saved(cli, live_api, consumer_file, tmp_path):
    assert cli("consumers", "apply", "-f", consumer_file(BODY)).returncode == 0
    editor = tmp_path / "editor.py"
    editor.write_text("import sys\n"
                      "path = sys.argv[1]\n"
                      "text = open(path).read()\n"
                      "open(path, 'w').write(text.replace('replicas: 1', 'replicas: 4'))\n")
    env = {"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""}
    edited = cli("consumers", "edit", "cli-orders", "-o", "table", env=env)
    assert edited.returncode == 0, edited.err
    assert edited.out.splitlines() == ["consumer cli-orders configured", "  changed replicas"]
    assert live_api.get("/consumers/cli-orders/")["replicas"] == 4

    # an editor that saves nothing new cancels; one that breaks the YAML is exit 2 and keeps the edit
    unchanged = cli("consumers", "edit", "cli-orders", env={"EDITOR": "true", "VISUAL": ""})
    assert unchanged.returncode == 0 and "edit cancelled" in unchanged.err
    breaker = tmp_path / "breaker.py"
    breaker.write_text("import sys\nopen(sys.argv[1], 'a').write('\\n  : [unbalanced\\n')\n")
    broken = cli("consumers", "edit", "cli-orders", env={"EDITOR": f"{sys.executable} {breaker}", "VISUAL": ""})
    assert broken.returncode == 2, broken.err
    assert "neither YAML nor JSON" in broken.err and "your edit is kept in" in broken.err
    assert _versions(live_api, "cli-orders") == [2, 1]
