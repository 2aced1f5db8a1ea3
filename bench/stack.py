"""The kcm side of the harness: its own state database and Redis index, the real supervisor and API
processes, and a cleanup stack that undoes everything on the way out (errors and Ctrl-C included)."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.api_client import BENCH_ADMIN_TOKEN, BENCH_RATE_LIMIT, KcmClient

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATABASE = "kcm_bench"  # --bench-db
BENCH_REDIS_DB = 14  # --bench-redis-db
SCALE_SUFFIX = "_scale"  # control_scale's second supervisor: database <bench db>_scale, Redis index one below
# secrets the harness makes up for a run; the only KCM_* variables of the caller that reach kcm
BENCH_SECRET_PREFIX = "KCM_SECRET_BENCH_"
MASK_KEY_ENV = f"{BENCH_SECRET_PREFIX}MASK_KEY"  # the steps benchmarks' json_transform HMAC key


class Cleanup:
    """A LIFO of undo actions; each runs once, a failing one does not stop the others."""

    def __init__(self):
        self._actions: list[tuple[str, object]] = []

    def push(self, what: str, action) -> None:
        self._actions.append((what, action))

    def run(self) -> None:
        while self._actions:
            what, action = self._actions.pop()
            try:
                action()
            except Exception as exc:  # cleanup goes on: report, never hide the original error
                print(f"cleanup: {what} failed: {type(exc).__name__}: {exc}", file=sys.stderr)


def terminate_on_sigterm() -> None:
    """SIGTERM behaves like Ctrl-C, so `finally` blocks clean up either way."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)


def set_bench_secrets() -> None:
    """This run's secrets, random, in the harness's own environment: the bare loops inherit them and
    ``BenchEnv.kcm_environ`` passes them to kcm, so a config can name them as ``${env:KCM_SECRET_BENCH_...}``."""
    os.environ[MASK_KEY_ENV] = secrets.token_hex(32)


DATABASE_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,56}")  # 63 bytes with the suffix, no quoting needed


def bench_database_problem(name: str) -> str | None:
    """Why ``name`` cannot be the harness's database (it is created, and its copy for control_scale), or None."""
    if not DATABASE_NAME_RE.fullmatch(name):
        return "lower-case letters, digits and '_', not starting with a digit, at most 57 characters"
    return None


def with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def with_redis_db(url: str, db: int) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def _redis_db(url: str) -> int:
    from urllib.parse import urlsplit

    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


def ensure_database(url: str) -> None:
    """CREATE DATABASE when missing (on the same server, through its 'postgres' database), then migrate."""
    import psycopg2
    from sqlalchemy.engine import make_url

    from schema.migrate import upgrade

    u = make_url(url)
    conn = psycopg2.connect(host=u.host, port=u.port, user=u.username, password=u.password, dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (u.database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{u.database}"')
    finally:
        conn.close()
    upgrade(url)


def libpq_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return f"host={u.host} port={u.port} user={u.username} password={u.password} dbname={u.database}"


def reset_state(database_url: str, redis_url: str) -> None:
    """The bench database and Redis index belong to the harness: forget consumers of an interrupted run."""
    import psycopg2
    import redis

    conn = psycopg2.connect(libpq_dsn(database_url))
    try:
        with conn, conn.cursor() as cur:
            cur.execute("TRUNCATE consumers CASCADE")
    finally:
        conn.close()
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("kcm:*", count=1000):
        client.delete(key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class BenchEnv:
    bootstrap: str
    database_url: str
    redis_url: str
    workdir: Path
    sink_root: Path
    run_id: str
    scale_database_url: str  # control_scale's own state database and Redis index
    scale_redis_url: str

    @classmethod
    def from_env(cls, run_id: str, database: str = BENCH_DATABASE, redis_db: int = BENCH_REDIS_DB) -> BenchEnv:
        from sqlalchemy.engine import make_url

        from schema.settings import Settings

        settings = Settings.from_env()
        if not settings.database_url.startswith("postgresql"):
            raise SystemExit("bench needs PostgreSQL: set KCM_DATABASE_URL (make bench does, from `make services`)")
        # the harness empties its database and Redis index: never the ones kcm itself is configured with
        if make_url(settings.database_url).database in (database, database + SCALE_SUFFIX):
            raise SystemExit(f"--bench-db {database}: that is KCM_DATABASE_URL's own database, which the bench "
                             "would empty; pick another name")
        if _redis_db(settings.redis_url) in (redis_db, redis_db - 1):
            raise SystemExit(f"--bench-redis-db {redis_db}: KCM_REDIS_URL uses index {_redis_db(settings.redis_url)}, "
                             f"which the bench would empty (it uses {redis_db} and {redis_db - 1}); pick another")
        workdir = ROOT / ".local" / "bench" / run_id
        return cls(bootstrap=settings.kafka_bootstrap,
                   database_url=with_database(settings.database_url, database),
                   redis_url=with_redis_db(settings.redis_url, redis_db),
                   workdir=workdir, sink_root=workdir / "sink", run_id=run_id,
                   scale_database_url=with_database(settings.database_url, database + SCALE_SUFFIX),
                   scale_redis_url=with_redis_db(settings.redis_url, redis_db - 1))

    def kcm_environ(self, **extra: str) -> dict[str, str]:
        # the caller's KCM_* settings stay out (kcm runs on the bench's own); the harness's secrets go in
        env = {k: v for k, v in os.environ.items() if not k.startswith("KCM_") or k.startswith(BENCH_SECRET_PREFIX)}
        env.update({"KCM_DATABASE_URL": self.database_url, "KCM_REDIS_URL": self.redis_url,
                    "KCM_KAFKA_BOOTSTRAP": self.bootstrap, "KCM_FILE_SINK_ROOT": str(self.sink_root),
                    "KCM_SUPERVISOR_ID": f"kcm-bench-{self.run_id}",
                    "KCM_LOG_LEVEL": os.environ.get("KCM_BENCH_LOG_LEVEL", "WARNING"),
                    "KCM_BOOTSTRAP_ADMIN_TOKEN": BENCH_ADMIN_TOKEN,  # bench.api_client sends it
                    # limits far above any benchmark's rate: the limiter's work is measured, never a 429
                    "KCM_RATE_LIMIT_READ": BENCH_RATE_LIMIT, "KCM_RATE_LIMIT_WRITE": BENCH_RATE_LIMIT,
                    "PYTHONUNBUFFERED": "1"})
        env.update(extra)
        return env


class Service:
    """A child process in its own session (a Ctrl-C on the terminal reaches only the harness, which then
    stops the child in order) with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict, log_path: Path):
        self.name, self.log_path = name, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float) -> int | None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the group is it and its children
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class KcmStack:
    """``python -m supervisor`` and ``gunicorn 'api:create_app()'`` against the bench database."""

    def __init__(self, env: BenchEnv, cleanup: Cleanup, *, web_workers: int = 2, profile_supervisor: str | None = None):
        self.env = env
        self.profile_supervisor = profile_supervisor
        self.cleanup = cleanup
        self.web_workers = web_workers
        self.port = free_port()
        self.client = KcmClient(f"127.0.0.1:{self.port}")
        self.supervisor: Service | None = None
        self.api: Service | None = None

    def start(self) -> KcmStack:
        env = self.env.kcm_environ()
        bin_dir = Path(sys.executable).parent
        logs = self.env.workdir / "logs"
        self.env.sink_root.mkdir(parents=True, exist_ok=True)
        self.api = Service("api", [str(bin_dir / "gunicorn"), "api:create_app()", "--bind",
                                   f"127.0.0.1:{self.port}", "--workers", str(self.web_workers),
                                   "--log-level", "warning"], env, logs / "api.log")
        self.cleanup.push("stop the API", lambda: self.api.stop(10))
        argv = [sys.executable, "-m", "supervisor"]
        if self.profile_supervisor:  # pyinstrument writes its report when the supervisor exits on SIGTERM
            argv[1:1] = ["-m", "pyinstrument", "--use-timing-thread", "-r", "text", "-o", self.profile_supervisor]
            env["PYINSTRUMENT_IGNORE_OVERHEAD_WARNING"] = "1"
        self.supervisor = Service("supervisor", argv, env, logs / "supervisor.log")
        self.cleanup.push("stop the supervisor", lambda: self.supervisor.stop(30))
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 60) -> None:
        import redis

        from schema import keys

        client = redis.Redis.from_url(self.env.redis_url)
        supervisor_key = keys.supervisor_key(f"kcm-bench-{self.env.run_id}")
        deadline = time.monotonic() + timeout
        api_ok = sup_ok = False
        while time.monotonic() < deadline:
            for service in (self.api, self.supervisor):
                if not service.alive():
                    raise RuntimeError(f"{service.name} exited at start:\n{service.tail()}")
            api_ok = api_ok or self.client.ready()
            sup_ok = sup_ok or bool(client.exists(supervisor_key))
            if api_ok and sup_ok:
                return
            time.sleep(0.2)
        raise RuntimeError(f"kcm not ready after {timeout} s (api={api_ok}, supervisor heartbeat={sup_ok}):\n"
                           f"{self.api.tail()}\n{self.supervisor.tail()}")

    def remove_workdir(self) -> None:
        shutil.rmtree(self.env.workdir, ignore_errors=True)
