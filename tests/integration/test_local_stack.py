"""`make services` is idempotent: a second start leaves exactly one Kafka, one PostgreSQL and one Redis."""
import os
import subprocess
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "deploy" / "local" / "services.sh"


def _count(pattern: str) -> int:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return len(out.split())


def _instances(pg_url: str, redis_url: str) -> tuple[int, int, int]:
    """Processes of this checkout's stack (another checkout's stack on other ports does not count)."""
    kafka_port = os.environ["KCM_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1]
    kafka = _count(f"kafka.Kafka {ROOT}/.local/kafka/config/server.properties")
    redis = _count(f"redis-server 127.0.0.1:{urlparse(redis_url).port}")
    postgres = _count(f"postgres -D .* -p {urlparse(pg_url.replace('+psycopg2', '')).port}")
    assert kafka_port
    return kafka, redis, postgres


def test_second_start_is_a_no_op_with_one_instance_each(kafka_bootstrap, pg_url, redis_test_url):
    before = _instances(pg_url, redis_test_url)
    result = subprocess.run([str(SERVICES), "start"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stderr
    assert "export KCM_KAFKA_BOOTSTRAP=127.0.0.1:" in result.stdout
    after = _instances(pg_url, redis_test_url)
    assert after == before
    assert after == (1, 1, 1)


def test_status_and_env_report_the_running_stack():
    status = subprocess.run([str(SERVICES), "status"], capture_output=True, text=True, timeout=30).stdout
    for name in ("kafka", "postgres", "redis"):
        assert f"{name}" in status and "running" in status.split(name, 1)[1].splitlines()[0]
    env = subprocess.run([str(SERVICES), "env"], capture_output=True, text=True, timeout=30).stdout
    assert set(line.split("=")[0] for line in env.splitlines()) == {
        "export KCM_KAFKA_BOOTSTRAP", "export KCM_DATABASE_URL", "export KCM_TEST_DATABASE_URL",
        "export KCM_REDIS_URL",
        # the SCRAM listener (docs/security.md): its address, user, and the password as a KCM_SECRET_ variable
        "export KCM_LOCAL_KAFKA_SCRAM_BOOTSTRAP", "export KCM_LOCAL_KAFKA_SCRAM_USER", "export KCM_SECRET_KAFKA_PASSWORD"}
    assert "scram" in status and "running" in status.split("scram", 1)[1].splitlines()[0]
