"""Die with the supervisor: no orphan worker keeps consuming after its supervisor is gone."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

from schema.spec import PARENT_PID_ENV

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` when the parent dies (a no-op elsewhere; the heartbeat also watches)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def expected_parent() -> int | None:
    value = os.environ.get(PARENT_PID_ENV, "")
    return int(value) if value.isdigit() else None


def parent_gone(expected: int | None) -> bool:
    """True when the process that spawned us is no longer our parent (it died before or after prctl)."""
    return expected is not None and os.getppid() != expected
