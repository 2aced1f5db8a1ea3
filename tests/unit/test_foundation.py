"""Settings, key names and deployment files agree with each other."""
import re
import shlex
from pathlib import Path

import pytest
import yaml

from schema import keys
from schema.settings import Settings, SettingsError
from schema.states import ConsumerStatus, ProcessState, consumer_status

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented_in_env_example():
    documented = set(re.findall(r"^(KCM_[A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert set(Settings.names()) <= documented
    assert not (ROOT / ".env").exists() or ".env" in (ROOT / ".gitignore").read_text()


def test_settings_default_to_embedded_sqlite_and_local_stack():
    s = Settings.from_env({})
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith(".local/kcm.sqlite3")
    assert s.redis_url == "redis://127.0.0.1:16379/0"
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.reconcile_interval == 5 and s.heartbeat_interval == 1 and s.stopwaitsecs == 10


def test_bad_setting_names_the_variable():
    with pytest.raises(SettingsError, match="KCM_RECONCILE_INTERVAL='soon'"):
        Settings.from_env({"KCM_RECONCILE_INTERVAL": "soon"})
    with pytest.raises(SettingsError, match="KCM_BATCH_SIZE"):
        Settings.from_env({"KCM_BATCH_SIZE": "-5"})


def test_redis_keys_are_namespaced_and_per_replica():
    cid = "0b9a8c1e-0000-4000-8000-000000000001"
    names = [keys.COMMAND_STREAM, keys.SUPERVISORS_INDEX, keys.supervisor_key("host-a"),
             keys.replica_state_key(cid, 0), keys.heartbeat_key(cid, 0), keys.lease_key(cid, 1),
             keys.dead_letter_index(cid)]
    assert all(n.startswith("kcm:") for n in names)
    assert len(set(names)) == len(names)
    assert keys.heartbeat_key(cid, 1) == f"kcm:consumer:{cid}:replica:1:heartbeat"


def test_seed_status_folds_replica_states():
    assert consumer_status([ProcessState.RUNNING, ProcessState.RUNNING]) == ConsumerStatus.ACTIVE
    assert consumer_status([ProcessState.RUNNING, ProcessState.BACKOFF]) == ConsumerStatus.ERROR
    assert consumer_status([ProcessState.STOPPED]) == ConsumerStatus.INACTIVE
    assert consumer_status([]) == ConsumerStatus.INACTIVE


def _procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


LONG_RUNNING = ("web", "supervisor", "deadletters", "lag")


def test_procfile_and_compose_run_the_same_processes():
    procfile = _procfile()
    assert set(procfile) == {"release", *LONG_RUNNING}
    assert procfile["release"] == "python -m schema.migrate"
    assert procfile["web"] == "gunicorn -c deploy/gunicorn.conf.py 'api:create_app()'"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in LONG_RUNNING:
        program = shlex.split(procfile[name])[:3]
        assert compose[name]["command"][:2] == program[:2], name
    # the web process's settings live in deploy/gunicorn.conf.py, used by all three
    assert compose["web"]["command"][:4] == shlex.split(procfile["web"])
    # compose's one-shot migrate service is the Procfile's release step, and the others wait for it
    assert compose["migrate"]["command"] == shlex.split(procfile["release"])
    assert compose["migrate"]["restart"] == "no"
    for name in LONG_RUNNING:
        assert compose[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    assert {"kafka", "postgres", "redis"} <= set(compose)


def test_honcho_starts_only_the_long_running_processes_by_name():
    # the release line exits when done: started with the others, Honcho would stop them all
    run_sh = (ROOT / "deploy" / "local" / "run.sh").read_text()
    assert "honcho start -f Procfile -p \"$PORT\" " + " ".join(LONG_RUNNING) in run_sh
    assert "python -m schema.migrate" in run_sh


def test_supervisord_config_runs_the_procfile_commands():
    conf = (ROOT / "deploy" / "supervisord" / "kcm.conf").read_text()
    assert 'gunicorn -c deploy/gunicorn.conf.py "api:create_app()"' in conf
    assert "-m supervisor" in conf
    assert "rq worker" in conf and keys.DEAD_LETTER_QUEUE in conf
    assert keys.DEAD_LETTER_QUEUE in _procfile()["deadletters"]


def test_the_rq_worker_listens_to_the_dead_letter_and_the_alert_queues_everywhere():
    queues = [keys.DEAD_LETTER_QUEUE, keys.ALERT_QUEUE]
    assert shlex.split(_procfile()["deadletters"])[-2:] == queues
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["deadletters"]["command"][-2:] == queues
    conf = (ROOT / "deploy" / "supervisord" / "kcm.conf").read_text()
    command = next(line for line in conf.splitlines() if line.startswith("command=") and "rq worker" in line)
    assert shlex.split(command)[-2:] == queues
    assert "programs=" + ",".join(f"kcm-{name}" for name in LONG_RUNNING) in conf


@pytest.mark.parametrize("url,expected", [
    ("postgresql+psycopg2://kcm:s3cret@127.0.0.1:15432/kcm", "postgresql+psycopg2://kcm:***@127.0.0.1:15432/kcm"),
    ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
    ("redis://127.0.0.1:16379/0", "redis://127.0.0.1:16379/0"),
    ("sqlite:////tmp/kcm.sqlite3", "sqlite:////tmp/kcm.sqlite3"),
])
def test_urls_in_logs_never_carry_the_password(url, expected):
    from schema.redact import redacted

    assert redacted(url) == expected


def test_a_worker_does_not_import_sqlalchemy():
    import subprocess
    import sys

    code = "import sys, workers.__main__; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
