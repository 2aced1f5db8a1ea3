"""One kcm worker a side, one setting apart: the comparison behind ``commit_interval`` and ``worker_metrics``.

Each side is ``python -m workers`` with the same spec (file_sink raw, the pre-filled topic ``throughput_file``
uses), started directly without the supervisor because the setting is a process setting; only the one
``KCM_*`` variable differs. Timed from outside like ``throughput_file``, sides alternating."""
from __future__ import annotations

import subprocess
import sys
import uuid

from bench.harness import reaped, watch_processes
from bench.kafka_util import unique
from bench.observe import FileProgress
from bench.results import Result
from bench.stack import ROOT
from bench.throughput import PARTITIONS, SIZE, _compare
from schema.spec import SPEC_ENV, ProcessorSpec, WorkerSpec


def run_worker(h, topic: str, path, total: int, variable: str, value, *, slug: str, figure: str) -> dict:
    """One worker with ``variable=value`` consuming ``topic`` into ``path`` until the file holds every message;
    ``slug`` names its group, log and sink, ``figure`` is the key its value is recorded under."""
    group = unique(f"kcm-bench-{slug}")
    spec = WorkerSpec(consumer_id=str(uuid.uuid4()), replica=0, generation=1, bootstrap_servers=h.env.bootstrap,
                      topic=topic, group_id=group, processors=(ProcessorSpec(
                          id="file", processor_type="file_sink",
                          config={"path": str(path.relative_to(h.env.sink_root)), "format": "raw"}),))
    env = h.env.kcm_environ(**{variable: str(value), SPEC_ENV: spec.to_json()})
    log_path = h.env.workdir / f"worker-{slug}-{value}-{spec.consumer_id[:8]}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "workers"], env=env, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    with reaped([proc]):
        figures, machine_busy = watch_processes([proc], FileProgress(str(path), SIZE + 1), total)
        code = proc.wait(60)
    if code != 0:
        raise RuntimeError(f"worker exited {code}: {log_path.read_text()[-2000:]}")
    committed = h.offsets.wait_committed(group, topic, timeout=15)
    return {**figures, "machine_busy_pct": machine_busy, "group": group, figure: value,
            "offsets_committed": committed}


def compare_setting(h, name: str, title: str, baseline: str, target: float, *, variable: str, sides: dict,
                    slug: str, figure: str, params: dict, notes: list[str]) -> Result:
    """``sides`` maps each side's name to its value of ``variable``, the baseline first: the ratio is the
    second side over the first. The messages are ``--messages`` (default 1,000,000)."""
    messages = h.args.messages or 1_000_000
    topic = h.prefilled_topic(messages, PARTITIONS, SIZE)

    def side(value):
        def run():
            return run_worker(h, topic, h.sink_path(f"{slug}-{value}"), messages, variable, value, slug=slug,
                              figure=figure)
        return run

    return _compare(h, name, title, baseline, target, messages, {s: side(v) for s, v in sides.items()},
                    {s: f"{variable}={v}" for s, v in sides.items()},
                    {"messages": messages, "partitions": PARTITIONS, "value_bytes": SIZE, "format": "raw",
                     "fsync": "every batch (file_sink default)", **params},
                    [f"Both sides are `python -m workers` with the same spec, started directly (no supervisor); "
                     f"only {variable} differs. Timed like throughput_file: from the first poll that sees lines in "
                     "the file to the first that sees all of them.", *notes])
