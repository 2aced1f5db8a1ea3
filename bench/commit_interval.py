"""Benchmark: what committing offsets every second costs. One kcm worker (``python -m workers``, file_sink raw, the
same pre-filled topic as ``throughput_file``) with ``KCM_COMMIT_INTERVAL_MS=1000`` (kcm's default: a kill -9
redelivers about one second of traffic) against ``5000`` (librdkafka's default), in the same run, sides
alternating. The worker is run directly, without the supervisor, because the interval is a process setting."""
from __future__ import annotations

import signal
import subprocess
import sys
import uuid

from bench.harness import CpuWindow, _window_figures
from bench.kafka_util import unique
from bench.observe import FileProgress, watch
from bench.procfs import busy_percent, cpu_snapshot
from bench.results import Result
from bench.stack import ROOT
from bench.throughput import PARTITIONS, SIZE, _compare
from schema.spec import SPEC_ENV, ProcessorSpec, WorkerSpec

INTERVALS_MS = (5000, 1000)  # the baseline first: the ratio is 1000 ms over 5000 ms
TARGET = 0.98  # throughput drop of at most 2 %


def run_worker(h, topic: str, path, total: int, commit_interval_ms: int) -> dict:
    """One worker consuming ``topic`` into ``path`` until the file holds every message, timed from outside."""
    group = unique("kcm-bench-commit")
    spec = WorkerSpec(consumer_id=str(uuid.uuid4()), replica=0, generation=1, bootstrap_servers=h.env.bootstrap,
                      topic=topic, group_id=group, processors=(ProcessorSpec(
                          id="file", processor_type="file_sink",
                          config={"path": str(path.relative_to(h.env.sink_root)), "format": "raw"}),))
    env = h.env.kcm_environ(KCM_COMMIT_INTERVAL_MS=str(commit_interval_ms), **{SPEC_ENV: spec.to_json()})
    log_path = h.env.workdir / f"worker-commit-{commit_interval_ms}-{spec.consumer_id[:8]}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "workers"], env=env, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        cpu = CpuWindow(lambda: [proc.pid])
        before = cpu_snapshot()
        window = watch(FileProgress(str(path), SIZE + 1), total, alive=lambda: proc.poll() is None,
                       on_first=cpu.first)
        cpu.last()
        machine_busy = busy_percent(before, cpu_snapshot())
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code != 0:
        raise RuntimeError(f"worker exited {code}: {log_path.read_text()[-2000:]}")
    committed = h.offsets.wait_committed(group, topic, timeout=15)
    return {**_window_figures(window), **cpu.figures(window), "machine_busy_pct": machine_busy, "group": group,
            "commit_interval_ms": commit_interval_ms, "offsets_committed": committed}


def commit_interval(h) -> Result:
    messages = h.args.messages or 1_000_000
    topic = h.prefilled_topic(messages, PARTITIONS, SIZE)

    def side(interval_ms: int):
        def run():
            return run_worker(h, topic, h.sink_path(f"commit-{interval_ms}"), messages, interval_ms)
        return run

    sides = {f"ms{ms}": side(ms) for ms in INTERVALS_MS}
    labels = {f"ms{ms}": f"KCM_COMMIT_INTERVAL_MS={ms}" for ms in INTERVALS_MS}
    return _compare(h, "commit_interval", "Commit interval, file sink", "the same worker committing every 5000 ms "
                    "(librdkafka's default)", TARGET, messages, sides, labels,
                    {"messages": messages, "partitions": PARTITIONS, "value_bytes": SIZE, "format": "raw",
                     "fsync": "every batch (file_sink default)", "intervals_ms": list(INTERVALS_MS)},
                    ["Both sides are `python -m workers` with the same spec, started directly (no supervisor); "
                     "only KCM_COMMIT_INTERVAL_MS differs. Timed like throughput_file: from the first poll that "
                     "sees lines in the file to the first that sees all of them.",
                     "Why 1000 ms: a kill -9 redelivers at most about one commit interval of traffic plus the "
                     "batch in flight (tests/integration/processors/test_kill9_e2e.py, the paced-stream test)."])
