"""The Procfile runs under Honcho: API answers, the supervisor heartbeats, the rq worker registers (the
long-running processes started by name, as `make run` does)."""
import os
import signal
import subprocess
import time

import redis

from schema import keys
from tests.integration.deploy.conftest import ROOT, VENV_BIN, free_port, wait_http_ok
from tests.support.kafka import wait_for


def test_honcho_runs_every_procfile_process_and_stops_them(kcm_env, redis_test_url, tmp_path):
    port = free_port()
    log = open(tmp_path / "honcho.log", "wb")
    # by name, as deploy/local/run.sh does: the one-shot release line would stop the others when it exits
    proc = subprocess.Popen([str(VENV_BIN / "honcho"), "start", "-f", str(ROOT / "Procfile"), "-p", str(port),
                             "web", "supervisor", "deadletters", "lag"],
                            cwd=ROOT, env=kcm_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    r = redis.Redis.from_url(redis_test_url)
    try:
        body = wait_http_ok(f"http://127.0.0.1:{port}/consumers/", proc,
                            token=kcm_env["KCM_BOOTSTRAP_ADMIN_TOKEN"])
        assert body.startswith(b"[")
        wait_http_ok(f"http://127.0.0.1:{port}/openapi.json", proc)
        wait_for(lambda: r.exists(keys.supervisor_key(kcm_env["KCM_SUPERVISOR_ID"])), timeout=30,
                 message="the supervisor's heartbeat key")
        wait_for(lambda: any({keys.DEAD_LETTER_QUEUE, keys.ALERT_QUEUE} <= set(
                                 (r.hget(k, "queues") or b"").decode().split(","))
                             for k in r.smembers("rq:workers")), timeout=30,
                 message="an rq worker on the dead-letter and the alert queues")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        log.close()
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], (tmp_path / "honcho.log").read_text()[-2000:]
