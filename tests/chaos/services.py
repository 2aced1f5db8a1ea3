"""PRIVATE Redis, PostgreSQL and Kafka for faults that stop a service: never the shared stack.

Each one runs on free ports under its own directory (deploy/local/services.sh with its own ``KCM_LOCAL`` for
PostgreSQL and Kafka, a bare ``redis-server`` for Redis), can be stopped and started again with its data, and
is torn down by ``close()`` (the fixtures call it in ``finally``).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import ROOT

SERVICES = ROOT / "deploy" / "local" / "services.sh"
SHARED_KAFKA_LIB = ROOT / ".local" / "kafka" / "lib"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, up: bool, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port) == up:
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not {'open' if up else 'close'} port {port} in {timeout} s")


class PrivateRedis:
    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="kcm-chaos-redis-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        if shutil.which("redis-server") is None:
            raise AssertionError("redis-server not found: the chaos suite starts a private one (apt-get install "
                                 "redis-server)")
        self.proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--dir", str(self.dir)],
                                     stdout=open(self.dir / "redis.log", "ab"), stderr=subprocess.STDOUT)
        wait_port(self.port, True, 10, "private redis")
        return self

    def stop(self) -> None:
        """A restart loses everything: no persistence, like a Redis that crashed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        wait_port(self.port, False, 10, "private redis")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class _ScriptedService:
    """A service run by deploy/local/services.sh under a private KCM_LOCAL and ports."""

    name = ""

    def __init__(self, **ports: int):
        self.local = Path(tempfile.mkdtemp(prefix=f"kcm-chaos-{self.name}-"))
        os.chmod(self.local, 0o755)  # PostgreSQL runs as 'postgres' when we are root
        self.env = {**os.environ, "KCM_LOCAL": str(self.local), **{k: str(v) for k, v in ports.items()}}

    def _run(self, command: str, timeout: float = 180) -> None:
        result = subprocess.run([str(SERVICES), command, self.name], env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        if result.returncode:
            raise AssertionError(f"services.sh {command} {self.name} (private) failed: {result.stderr[-2000:]}")

    def start(self):
        self._run("start")
        return self

    def stop(self) -> None:
        self._run("stop")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.local, ignore_errors=True)


class PrivatePostgres(_ScriptedService):
    name = "postgres"

    def __init__(self):
        self.port = free_port()
        super().__init__(KCM_LOCAL_PG_PORT=self.port)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://kcm:kcm@127.0.0.1:{self.port}/kcm_test"

    def stop(self) -> None:
        super().stop()
        wait_port(self.port, False, 30, "private postgres")

    def close(self) -> None:
        super().close()
        import hashlib

        digest = hashlib.md5(str(self.local).encode()).hexdigest()[:10]
        shutil.rmtree(f"/var/tmp/kcm-postgres-{digest}", ignore_errors=True)  # pg_dir's fallback as root


class PrivateKafka(_ScriptedService):
    name = "kafka"

    def __init__(self):
        self.port, self.controller, self.scram = free_port(), free_port(), free_port()
        # every listener on a port of its own: the shared broker holds the default ones (19092-19094)
        super().__init__(KCM_LOCAL_KAFKA_PORT=self.port, KCM_LOCAL_KAFKA_CONTROLLER_PORT=self.controller,
                         KCM_LOCAL_KAFKA_SCRAM_PORT=self.scram)
        # the jars the shared stack fetched once: no second download
        (self.local / "kafka").mkdir()
        (self.local / "kafka" / "lib").symlink_to(SHARED_KAFKA_LIB)
        (self.local / "kafka" / "lib.ok").touch()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        super().stop()
        wait_port(self.port, False, 60, "private kafka")
