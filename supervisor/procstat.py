"""What a worker process says about itself: CPU time and run state from /proc/<pid>/stat (Linux)."""
from __future__ import annotations

import os

from schema.replica_machine import ProcessSample

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def sample(pid: int) -> ProcessSample | None:
    """utime + stime in seconds, and whether it is stopped (T) or traced (t); None when unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after the ")" of comm: state is field 3 of stat(5), utime 14 and stime 15
    try:
        return ProcessSample(cpu_seconds=(int(fields[11]) + int(fields[12])) / _TICKS,
                             stopped=fields[0] in (b"T", b"t"))
    except (IndexError, ValueError):
        return None
