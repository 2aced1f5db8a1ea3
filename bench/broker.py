"""A private Kafka broker for the scaling benchmarks, configured as a production cluster is.

The shared local broker (``make services``) runs ``group.initial.rebalance.delay.ms=0`` so that a test's first
consumer gets its partitions at once. With 0, the first replica of a consumer to reach the group takes every
partition, and a sibling arriving a few hundred ms later forces a second generation while data flows: the first
replica keeps consuming the partitions it is about to hand over until its next heartbeat, and ends the run with
that much more to do than its sibling. Kafka's default (3000 ms) makes a new group wait for members arriving
together, so replicas started at once share one generation. The scaling benchmarks measure the data plane on that
default; ``--scaling-broker shared`` measures them on the shared broker instead.

Run by deploy/local/services.sh under its own ``KCM_LOCAL`` and free ports, with the shared stack's jars (no
second download), stopped and removed by the harness's cleanup stack.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from bench.stack import ROOT, Cleanup

SERVICES = ROOT / "deploy" / "local" / "services.sh"
SHARED_KAFKA_LIB = ROOT / ".local" / "kafka" / "lib"
KAFKA_DEFAULT_GROUP_DELAY_MS = 3000  # Kafka's own default for group.initial.rebalance.delay.ms


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_private_broker(cleanup: Cleanup, *, group_delay_ms: int = KAFKA_DEFAULT_GROUP_DELAY_MS) -> str:
    """Start the broker, push its stop onto ``cleanup``, return its bootstrap address."""
    if not SHARED_KAFKA_LIB.is_dir():
        raise SystemExit(f"{SHARED_KAFKA_LIB} is missing: run `make services` first (it fetches Kafka once)")
    local = Path(tempfile.mkdtemp(prefix="kcm-bench-kafka-"))
    (local / "kafka").mkdir()
    (local / "kafka" / "lib").symlink_to(SHARED_KAFKA_LIB)
    (local / "kafka" / "lib.ok").touch()
    port = _free_port()
    env = {**os.environ, "KCM_LOCAL": str(local), "KCM_LOCAL_KAFKA_PORT": str(port),
           "KCM_LOCAL_KAFKA_CONTROLLER_PORT": str(_free_port()), "KCM_LOCAL_KAFKA_SCRAM_PORT": str(_free_port()),
           "KCM_LOCAL_KAFKA_GROUP_DELAY_MS": str(group_delay_ms)}

    def services(command: str) -> None:
        result = subprocess.run([str(SERVICES), command, "kafka"], env=env, capture_output=True, text=True,
                                timeout=240)
        if result.returncode:
            raise RuntimeError(f"services.sh {command} kafka (bench's private broker) failed: "
                               f"{result.stderr[-2000:]}")

    def stop() -> None:
        try:
            services("stop")
        finally:
            shutil.rmtree(local, ignore_errors=True)

    cleanup.push("stop the private scaling broker", stop)
    services("start")
    bootstrap = f"127.0.0.1:{port}"
    print(f"private broker on {bootstrap} (group.initial.rebalance.delay.ms={group_delay_ms}) for the scaling "
          "benchmarks")
    return bootstrap
