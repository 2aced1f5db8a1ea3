"""`kcm consumers edit` when the API refuses what was saved (422): the field errors, exit 1, nothing changed."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml


def test_an_edit_the_api_refuses_prints_the_field_errors_exits_1_and_changes_nothing(cli, live_api, consumer_file,
                                                                                     tmp_path):
    created = cli("consumers", "apply", "-f", consumer_file({
        "name": "cli-edited", "broker_ip": "127.0.0.1", "broker_port": 19092, "topic": "orders",
        "consumer_group": "cli-edited",
        "downstream_processors": [{"processor_type": "file_sink", "config": {"file_path": "edited.log"}}]}))
    assert created.returncode == 0, created.err
    before = live_api.get("/consumers/cli-edited/")
    versions = live_api.get("/consumers/cli-edited/versions/")

    # a valid change, an invalid port and a processor change: the consumer's PATCH is refused, so none is made
    editor = tmp_path / "editor.py"
    editor.write_text("import sys\n"
                      "path = sys.argv[1]\n"
                      "text = open(path).read()\n"
                      "text = text.replace('replicas: 1', 'replicas: 3').replace('broker_port: 19092', "
                      "'broker_port: 70000').replace('edited.log', 'other.log')\n"
                      "open(path, 'w').write(text)\n")
    edited = cli("consumers", "edit", "cli-edited", env={"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""})
    assert edited.returncode == 1, (edited.out, edited.err)
    assert edited.out == ""
    lines = edited.err.splitlines()
    assert lines[0].startswith("Error: 422 Unprocessable Entity: "), edited.err
    assert "  json.broker_port: Must be greater than or equal to 1 and less than or equal to 65535." in lines
    assert not any("replicas" in line for line in lines)  # only the refused field is named

    kept_line = next(line for line in lines if "your edit is kept in" in line)
    kept = Path(kept_line.split("your edit is kept in ", 1)[1].split(" ", 1)[0])
    try:
        saved = yaml.safe_load(kept.read_text())
        assert (saved["broker_port"], saved["replicas"]) == (70000, 3)  # the edit, to fix and apply -f
    finally:
        kept.unlink(missing_ok=True)

    assert live_api.get("/consumers/cli-edited/") == before
    assert live_api.get("/consumers/cli-edited/versions/") == versions
