"""Readers of /proc for the harness: memory, CPU time and liveness of a process, and how busy the machine is."""
from __future__ import annotations

import os

KIB_TO_MB = 1024 / 1_000_000  # /proc reports KiB; the targets are in MB


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * KIB_TO_MB
    raise RuntimeError(f"no VmRSS for {pid}")


def pss_mb(pid: int) -> float | None:
    """Proportional set size: shared pages split between their users, so a sum over processes is honest."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * KIB_TO_MB
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process itself, all its threads (its reaped children are not counted)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(pids) -> dict[int, float]:
    """CPU seconds of each pid still readable (a process that is gone is left out)."""
    result = {}
    for pid in pids:
        try:
            result[pid] = cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return result


def process_gone(pid: int) -> bool:
    """Gone, or a zombie waiting for its parent to reap it (it holds no resources any more)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def cpu_snapshot() -> tuple[int, int]:
    """(busy, total) jiffies over all cores from /proc/stat."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def busy_percent(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """How busy the whole machine was between two snapshots, in % of all cores (others' work included)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total * 100 if total > 0 else None
