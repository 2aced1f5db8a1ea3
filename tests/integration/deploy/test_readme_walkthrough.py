"""README.md's "A first consumer", run as written: its ```sh walkthrough blocks, parsed from the README at test
time, run with bash against kcm started the way `make run` starts it (deploy/local/run.sh).

The commands run in a scratch directory laid out like a checkout (`.venv` links to the real one, `.local/` is
the test's own), so the README's `.local/admin-token` and `.local/sink/orders.log` are this run's files and a
developer's own `make run` state is never touched. Port 8000 and the consumer group `g1` are the README's: the
test fails, saying why, when something else holds them.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.integration.deploy.conftest import ROOT, VENV_BIN
from tests.support.kafka import wait_for

README_PORT = 8000
README_BOOTSTRAP = "127.0.0.1:19092"
README_GROUP = "g1"
SECTION = "## A first consumer"
BLOCK_RE = re.compile(r"^```sh walkthrough\n(.*?)^```$", re.M | re.S)
DELIVERED_RE = re.compile(r"delivered 10 of 10 messages to orders \(run ([0-9a-f]+)\)")


def walkthrough_script() -> str:
    readme = (ROOT / "README.md").read_text()
    assert readme.count(SECTION) == 1, f"README.md needs exactly one {SECTION!r} heading"
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = BLOCK_RE.findall(section)
    assert len(blocks) >= 3, "the walkthrough's ```sh walkthrough blocks are missing from README.md"
    return "\n".join(blocks)


def _require_free_port(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            pytest.fail(f"port {port} is in use; the README walkthrough needs it (stop your `make run`)",
                        pytrace=False)


def _require_idle_group(admin, group: str, timeout: float = 90) -> None:
    # a live member of g1 (a developer's walkthrough consumer) would take some of the test's partitions
    def idle():
        description = admin.describe_consumer_groups([group])[group].result(30)
        return not description.members

    wait_for(idle, timeout=timeout, interval=1,
             message=f"consumer group {group!r} without members (stop any other consumer in it)")


def _processes_with(marker: str) -> list[int]:
    """Pids whose environment carries ``marker``: everything this test started, in whatever session."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _wait_api(url: str, proc, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"deploy/local/run.sh exited with {proc.returncode} before the API answered"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers (a 401 once authentication is on)
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def _records_of_run(sink: Path, run: str) -> dict[int, dict]:
    if not sink.exists():
        return {}
    records = {}
    for line in sink.read_text().splitlines():
        if f'"{run}"' in line:
            record = json.loads(line)
            records[record["seq"]] = record
    return records


@pytest.fixture
def scratch_checkout(tmp_path):
    """A directory shaped like the checkout: the README's relative paths resolve into the test's own state."""
    work = tmp_path / "checkout"
    (work / ".local" / "sink").mkdir(parents=True)
    (work / ".venv").symlink_to(VENV_BIN.parent)
    return work


def test_readme_walkthrough_runs_as_written_and_the_messages_reach_the_sink(
        scratch_checkout, kafka_bootstrap, kafka_admin, redis_client, redis_test_url, tmp_path):
    assert kafka_bootstrap == README_BOOTSTRAP, "the README's consumer names the local stack's Kafka"
    script = walkthrough_script()
    _require_free_port(README_PORT)
    _require_idle_group(kafka_admin, README_GROUP)

    local = scratch_checkout / ".local"
    marker = f"KCM_SUPERVISOR_ID=readme-{uuid.uuid4().hex[:12]}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KCM_") and k not in ("PORT", "VIRTUAL_ENV")}
    env.update({
        "KCM_LOCAL": str(local),
        "KCM_DATABASE_URL": f"sqlite:///{tmp_path / 'kcm.sqlite3'}",
        "KCM_FILE_SINK_ROOT": str(local / "sink"),
        "KCM_REDIS_URL": redis_test_url,
        "KCM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KCM_SUPERVISOR_ID": marker.split("=", 1)[1],
        "PYTHONUNBUFFERED": "1",
    })
    log_path = tmp_path / "make-run.log"
    with open(log_path, "wb") as log:
        kcm = subprocess.Popen(["bash", str(ROOT / "deploy" / "local" / "run.sh")], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_api(f"http://127.0.0.1:{README_PORT}/openapi.json", kcm)
        token_file = local / "admin-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert token.startswith("kcm_") and len(token) >= 40

        # the second terminal: a shell in the checkout, no KCM_* settings of its own
        shell_env = {k: v for k, v in env.items() if not k.startswith("KCM_")}
        walk = subprocess.run(["bash", "-e", "-c", script], cwd=scratch_checkout, env=shell_env,
                              capture_output=True, text=True, timeout=300)
        output = walk.stdout + walk.stderr
        assert walk.returncode == 0, output
        assert "Traceback" not in output, output
        delivered = DELIVERED_RE.search(walk.stdout)
        assert delivered, output
        run = delivered.group(1)

        sink = local / "sink" / "orders.log"
        wait_for(lambda: len(_records_of_run(sink, run)) == 10, timeout=120, interval=0.5,
                 message=f"the ten records of run {run} in {sink}")
        records = _records_of_run(sink, run)
        assert sorted(records) == list(range(10))
        assert all(r["run"] == run for r in records.values())
        tail = walk.stdout.strip().splitlines()[-10:]
        assert any(f'"{run}"' in line for line in tail), "the README's tail shows the new lines"

        # database_sync with an empty config copies them into kcm's own database
        engine = sa.create_engine(env["KCM_DATABASE_URL"])
        try:
            def copied():
                with engine.connect() as conn:
                    if not sa.inspect(conn).has_table("kcm_messages"):
                        return 0
                    values = conn.execute(sa.text("SELECT value FROM kcm_messages")).scalars().all()
                return sum(1 for v in values if run in (v.decode() if isinstance(v, bytes) else str(v)))
            wait_for(lambda: copied() >= 10, timeout=120, interval=0.5,
                     message=f"the ten records of run {run} in kcm_messages")
        finally:
            engine.dispose()
    finally:
        os.killpg(kcm.pid, signal.SIGTERM)
        try:
            kcm.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(kcm.pid, signal.SIGKILL)
        leftovers = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (leftovers := _processes_with(marker)):
            time.sleep(0.5)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    log_text = log_path.read_text(errors="replace")
    assert leftovers == [], f"processes outlived `make run`'s stop: {leftovers}\n{log_text[-2000:]}"
    assert token not in log_text, "the admin token reached make run's output"
    assert f'Authorization: Bearer $(cat {local / "admin-token"})' in log_text, "make run says how to use it"
