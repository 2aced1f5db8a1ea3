"""Where a figure was measured: CPU model, cores, memory, load, kcm's git commit, the date."""
from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{out}-dirty" if dirty else out
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict:
    import confluent_kafka

    version = confluent_kafka.version()  # a str in recent releases, a (str, int) tuple in older ones
    return {"python": platform.python_version(),
            "confluent_kafka": version if isinstance(version, str) else version[0],
            "librdkafka": confluent_kafka.libversion()[0]}


def describe() -> dict:
    load1, load5, _ = os.getloadavg()
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "kernel": platform.release(),
        "load_avg_at_start": [round(load1, 2), round(load5, 2)],
        **library_versions(),
    }


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
