"""gunicorn hooks for the API's HTTP metrics across workers (prometheus_client's multiprocess mode).

Standard library only at import time: deploy/gunicorn.conf.py imports this before prometheus_client is loaded
anywhere, because prometheus_client picks its storage when first imported and every worker inherits that::

    from api.metrics_setup import child_exit, prepare_multiprocess_dir  # noqa: F401 (child_exit: a hook)
    prepare_multiprocess_dir()
"""
from __future__ import annotations

import os
import tempfile

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(path: str | None = None) -> str:
    """An empty directory for the workers' metric files (a previous run's files would be summed in), exported
    as PROMETHEUS_MULTIPROC_DIR for the workers gunicorn forks."""
    path = path or os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="kcm-metrics-")
    os.makedirs(path, exist_ok=True)
    for entry in os.listdir(path):
        if entry.endswith(".db"):
            os.unlink(os.path.join(path, entry))
    os.environ[MULTIPROC_ENV] = path
    return path


def child_exit(server, worker) -> None:
    """gunicorn's ``child_exit`` hook: a dead worker's live gauges leave the sums (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
