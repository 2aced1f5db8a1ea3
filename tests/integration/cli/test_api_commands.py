"""The API commands' contract: exit codes 0/1/2/3, the API's message and field errors (never a traceback),
JSON when piped, processors, API keys and the audit trail."""
from __future__ import annotations

import json
import socket

import yaml

BODY = {"name": "cli-keys", "broker_ip": "127.0.0.1", "broker_port": 19092, "topic": "orders",
        "consumer_group": "cli-group"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_exit_codes_and_the_apis_field_errors(cli, live_api, consumer_file, tmp_path):
    port = closed_port()
    unreachable = cli("consumers", "list", "--api", f"http://127.0.0.1:{port}")
    assert unreachable.returncode == 3
    assert unreachable.err.startswith(f"Error: cannot reach the kcm API at http://127.0.0.1:{port} "
                                      "(Connection refused)")
    assert len(unreachable.err.strip().splitlines()) == 1

    invalid = cli("consumers", "create", "-f", consumer_file({**BODY, "broker_port": 0, "replicas": "two"}))
    assert invalid.returncode == 1
    lines = invalid.err.strip().splitlines()
    assert lines[0] == ("Error: 422 Unprocessable Entity: The request is invalid: see errors for the messages "
                        "per location and field.")
    assert "  json.broker_port: Must be greater than or equal to 1 and less than or equal to 65535." in lines
    assert "  json.replicas: Not a valid integer." in lines
    assert live_api.get("/consumers/") == []

    missing = cli("consumers", "get", "no-such-consumer")
    assert missing.returncode == 1
    assert missing.err.strip() == "Error: 404 Not Found: consumer no-such-consumer not found"

    for args in (["consumers", "get"], ["consumers", "list", "-o", "xml"], ["offsets", "reset", "x", "--to", "now"],
                 ["consumers", "create", "-f", str(tmp_path / "absent.yaml")]):
        usage = cli(*args)
        assert usage.returncode == 2, (args, usage.err)
    not_a_mapping = cli("consumers", "apply", "-f", "-", input="- just\n- a list\n")
    assert not_a_mapping.returncode == 2 and "must hold one consumer" in not_a_mapping.err
    nameless = cli("consumers", "apply", "-f", consumer_file({k: v for k, v in BODY.items() if k != "name"}))
    assert nameless.returncode == 2 and "needs a 'name'" in nameless.err

    unauthenticated = cli("consumers", "list", auth=False, env={"KCM_API_URL": live_api.url})
    assert unauthenticated.returncode == 1 and unauthenticated.err.startswith("Error: 401 Unauthorized")


def test_output_is_json_when_piped_and_a_table_or_yaml_when_asked(cli, live_api, consumer_file):
    assert cli("consumers", "create", "-f", consumer_file(BODY)).returncode == 0
    piped = cli("consumers", "list")
    assert [c["name"] for c in piped.json] == ["cli-keys"]
    table = cli("consumers", "list", "-o", "table").out.splitlines()
    assert table[0].split()[:4] == ["NAME", "ID", "TOPIC", "CONSUMER_GROUP"]
    assert table[1].split()[:4] == ["cli-keys", piped.json[0]["id"], "orders", "cli-group"]
    assert cli("-o", "table", "consumers", "list").out.splitlines() == table  # the root's -o works too
    assert yaml.safe_load(cli("consumers", "list", "-o", "yaml").out) == piped.json


def test_processors_add_update_remove_and_types(cli, live_api, consumer_file, tmp_path):
    assert cli("consumers", "create", "-f", consumer_file(BODY)).returncode == 0
    types = cli("processors", "types")
    assert {"file_sink", "database_sync", "kafka_forward", "test_collector"} <= {t["name"] for t in types.json}

    added = cli("processors", "add", "cli-keys", "--type", "test_collector", "--config", '{"path": "/tmp/x.log"}',
                "--on-error", "skip")
    assert added.returncode == 0, added.err
    (config_file := tmp_path / "sink.yaml").write_text("file_path: out.log\n")
    assert cli("processors", "add", "cli-keys", "--type", "file_sink", "--config", f"@{config_file}").returncode == 0
    listed = live_api.get("/consumers/cli-keys/processors/")
    assert [(p["processor_type"], p["on_error"]) for p in listed] == [("test_collector", "skip"), ("file_sink", "retry")]
    assert listed[1]["config"]["file_path"] == "out.log"

    updated = cli("processors", "update", "cli-keys", "0", "--config", "{path: /tmp/y.log}", "--on-error", "retry")
    assert updated.returncode == 0, updated.err
    assert updated.json["id"] == listed[0]["id"] and updated.json["config"]["path"] == "/tmp/y.log"
    bad = cli("processors", "update", "cli-keys", listed[1]["id"], "--config", "{}")
    assert bad.returncode == 1 and "json.config.file_path: Missing data for required field." in bad.err
    assert cli("processors", "show", "cli-keys", "1").json["id"] == listed[1]["id"]

    removed = cli("processors", "remove", "cli-keys", listed[0]["id"], "-o", "table")
    assert removed.returncode == 0 and removed.out.strip() == f"removed processor {listed[0]['id']}"
    assert [p["id"] for p in live_api.get("/consumers/cli-keys/processors/")] == [listed[1]["id"]]
    numbered = cli("processors", "list", "cli-keys", "-o", "table").out.splitlines()
    assert numbered[0].split()[:3] == ["#", "POSITION", "PROCESSOR_TYPE"] and numbered[1].split()[0] == "0"
    assert cli("processors", "remove", "cli-keys", "5").returncode == 2


def test_keys_create_list_revoke_and_the_audit_trail(cli, live_api, consumer_file):
    created = cli("keys", "create", "cli-viewer", "--role", "viewer", "--scope", "cli-*")
    assert created.returncode == 0, created.err
    token = created.json["token"]
    assert token.startswith("kcm_") and created.json["scopes"] == ["cli-*"]
    shown = cli("keys", "create", "cli-operator", "--role", "operator", "-o", "table")
    assert "token: kcm_" in shown.out and "cannot be shown again" in shown.out

    listed = cli("keys", "list")
    assert {k["name"] for k in listed.json} >= {"cli-viewer", "cli-operator"}
    assert token not in listed.out

    as_viewer = {"KCM_TOKEN": token}
    assert cli("consumers", "list", env=as_viewer).json == []
    refused = cli("consumers", "create", "-f", consumer_file(BODY), env=as_viewer)
    assert refused.returncode == 1 and refused.err.startswith("Error: 403 Forbidden")

    revoked = cli("keys", "revoke", "cli-viewer", "-o", "table")
    assert revoked.returncode == 0, revoked.err
    assert revoked.out.strip() == f"revoked API key cli-viewer ({created.json['id']})"
    assert cli("consumers", "list", env=as_viewer).returncode == 1  # refused from now on
    keys = {k["name"]: k for k in live_api.get("/api-keys/")}
    assert keys["cli-viewer"]["revoked_at"] and not keys["cli-operator"]["revoked_at"]
    assert cli("keys", "list", "--active").json[0]["name"] == "cli-operator"

    audit = cli("audit", "--action", "api_key.revoke")
    assert audit.returncode == 0, audit.err
    assert [(e["action"], e["target_id"], e["outcome"]) for e in audit.json] == [
        ("api_key.revoke", created.json["id"], "allowed")]
    denied = cli("audit", "--outcome", "denied", "--action", "consumer.create")
    assert [(e["principal_name"], e["status_code"]) for e in denied.json] == [("cli-viewer", 403)]
    assert len(json.loads(cli("audit", "-o", "json", "--limit", "2").out)) == 2


def test_validate_reports_each_check_and_exits_1_when_one_fails(cli, live_api, consumer_file, topic_factory,
                                                                kafka_bootstrap):
    topic = topic_factory(partitions=2)
    good = {**BODY, "bootstrap_servers": [kafka_bootstrap], "topic": topic}
    del good["broker_ip"], good["broker_port"]
    passed = cli("consumers", "validate", "-f", consumer_file(good), "-o", "table")
    assert passed.returncode == 0, passed.err
    assert passed.out.splitlines()[0].split() == ["NAME", "OK", "DETAIL"]
    assert any(line.startswith("cluster topic") and " yes " in line for line in passed.out.splitlines())

    failed = cli("consumers", "validate", "-f", consumer_file({**good, "topic": "kcm-cli-no-such-topic"}, "bad.yaml"))
    assert failed.returncode == 1
    assert {c["name"]: c["ok"] for c in failed.json["checks"]}["cluster topic"] is False
    assert failed.err.strip() == "Error: 1 check(s) failed: cluster topic"
    refused = cli("consumers", "create", "--validate", "-f", consumer_file({**good, "topic": "kcm-cli-no-such-topic"},
                                                                          "bad.yaml"))
    assert refused.returncode == 1 and "  checks.cluster topic: " in refused.err
    assert live_api.get("/consumers/") == []
