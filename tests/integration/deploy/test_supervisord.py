"""deploy/supervisord/kcm.conf under a real supervisord (Debian's, outside kcm's virtualenv)."""
import os
import shutil
import subprocess
import time

import redis

from schema import keys
from tests.integration.deploy.conftest import ROOT, VENV_BIN, free_port, wait_http_ok
from tests.support.kafka import wait_for

SUPERVISORD = shutil.which("supervisord", path="/usr/bin:/usr/local/bin") or "/usr/bin/supervisord"


def _write_config(tmp_path, sock):
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"""
[supervisord]
nodaemon=true
logfile={tmp_path}/supervisord.log
pidfile={tmp_path}/supervisord.pid
childlogdir={tmp_path}

[unix_http_server]
file={sock}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{sock}

[include]
files={ROOT}/deploy/supervisord/kcm.conf
""")
    return conf


def _ctl(conf, *args):
    return subprocess.run(["/usr/bin/supervisorctl", "-c", str(conf), *args], capture_output=True, text=True,
                          timeout=60)


def test_supervisord_runs_kcm_programs_and_stops_them(kcm_env, redis_test_url, tmp_path):
    assert shutil.which("supervisord", path="/usr/bin"), "Debian's supervisor package is missing (.ci/run installs it)"
    port = free_port()
    sock = tmp_path / "supervisor.sock"
    conf = _write_config(tmp_path, sock)
    env = dict(kcm_env, KCM_HOME=str(ROOT), KCM_VENV=str(VENV_BIN.parent), KCM_PORT=str(port),
               KCM_LOG_DIR=str(tmp_path))
    # supervisord must not see kcm's virtualenv first on PATH: it is a separate install by design
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    proc = subprocess.Popen([SUPERVISORD, "-c", str(conf)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = redis.Redis.from_url(redis_test_url)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/consumers/", proc, timeout=90,
                     token=kcm_env["KCM_BOOTSTRAP_ADMIN_TOKEN"])
        wait_for(lambda: r.exists(keys.supervisor_key(kcm_env["KCM_SUPERVISOR_ID"])), timeout=30,
                 message="the supervisor's heartbeat key")
        wait_for(lambda: _ctl(conf, "status").stdout.count("RUNNING") == 4, timeout=30,
                 message="four RUNNING programs in supervisorctl status")
        status = _ctl(conf, "status").stdout
        for program in ("kcm:kcm-web", "kcm:kcm-supervisor", "kcm:kcm-deadletters", "kcm:kcm-lag"):
            assert program in status
        pids = [int(p) for p in _ctl(conf, "pid", "all").stdout.split() if p.isdigit()]
        assert len(pids) == 4 and all(pids)
    finally:
        proc.terminate()
        proc.wait(timeout=90)
    time.sleep(0.5)
    alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    assert alive == [], "kcm programs outlived supervisord"
