"""What every benchmark shares: settings, the kcm stack (started once, on first use), topics, offsets,
the cleanup stack, and the two ways to run one side of a comparison (bare process, kcm consumer)."""
from __future__ import annotations

import copy
import dataclasses
import json
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from bench import kafka_util
from bench.kafka_util import Offsets, Topics, unique
from bench.observe import Window, watch
from bench.procfs import busy_percent, cpu_of, cpu_snapshot
from bench.stack import BenchEnv, Cleanup, KcmStack, ensure_database, reset_state, set_bench_secrets


class Harness:
    def __init__(self, env: BenchEnv, args, cleanup: Cleanup):
        self.env, self.args, self.cleanup = env, args, cleanup
        set_bench_secrets()  # before the stack starts: kcm inherits them once
        self.topics = Topics(env.bootstrap)
        cleanup.push("delete benchmark topics", self.topics.delete_all)
        self.offsets = Offsets(env.bootstrap)
        cleanup.push("close the offsets probe", self.offsets.close)
        self._stack: KcmStack | None = None
        self._prefilled: dict[tuple, str] = {}
        self._sinks: list[Path] = []
        self._redis = None
        self._scaling: Harness | None = None
        cleanup.push("remove sink files", self.discard_sinks)

    # ------------------------------------------------------------------ shared resources
    def stack(self) -> KcmStack:
        if self._stack is None:
            ensure_database(self.env.database_url)
            reset_state(self.env.database_url, self.env.redis_url)
            self._stack = KcmStack(self.env, self.cleanup, web_workers=self.args.web_workers,
                                   profile_supervisor=getattr(self.args, "profile_supervisor", None)).start()
        return self._stack

    def on_broker(self, bootstrap: str) -> Harness:
        """This harness on another broker: its own topics and offsets probe; the same kcm stack, sinks, settings
        and cleanup stack."""
        self.stack()  # started once, shared: the copy must not start a second one
        other = copy.copy(self)
        other.env = dataclasses.replace(self.env, bootstrap=bootstrap)
        other.topics, other.offsets = Topics(bootstrap), Offsets(bootstrap)

        def retire() -> None:  # before the broker stops: its admin client goes with the last reference
            try:
                other.topics.delete_all()
            finally:
                other.offsets.close()
                other.topics = other.offsets = None

        self.cleanup.push(f"delete the benchmark topics on {bootstrap}, close its probes", retire)
        other._prefilled, other._scaling = {}, None
        return other

    def scaling(self) -> Harness:
        """Where the scaling benchmarks run: a private broker on Kafka's default group settings
        (bench.broker), or this harness with ``--scaling-broker shared``."""
        if getattr(self.args, "scaling_broker", "private") == "shared":
            return self
        if self._scaling is None:
            from bench.broker import start_private_broker

            self._scaling = self.on_broker(start_private_broker(self.cleanup))
        return self._scaling

    def prefilled_topic(self, messages: int, partitions: int = 4, size: int = 100) -> str:
        """One pre-filled topic per (count, partitions, size), shared by every run of every benchmark."""
        key = (messages, partitions, size)
        if key not in self._prefilled:
            topic = self.topics.create(partitions)
            seconds = kafka_util.prefill(self.env.bootstrap, topic, messages, size=size, partitions=partitions)
            print(f"pre-filled {topic}: {messages:,} x {size} B over {partitions} partitions in {seconds:.1f} s")
            self._prefilled[key] = topic
        return self._prefilled[key]

    def sink_path(self, label: str) -> Path:
        path = self.env.sink_root / f"{label}-{unique('run')}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._sinks.append(path)
        return path

    def discard_sinks(self) -> None:
        """Remove the sink files written so far (a 1,000,000-message run leaves 100 MB)."""
        while self._sinks:
            self._sinks.pop().unlink(missing_ok=True)

    def worker_pids(self, consumer_id: str, replicas: int) -> list[int]:
        """The live workers' pids from their heartbeat hashes (each writes one before it consumes)."""
        import redis

        from schema import keys

        if self._redis is None:
            self._redis = redis.Redis.from_url(self.env.redis_url, decode_responses=True)
        pids = [self._redis.hget(keys.heartbeat_key(consumer_id, n), "pid") for n in range(replicas)]
        return [int(p) for p in pids if p]

    # ------------------------------------------------------------------ one side of a comparison
    def run_bare(self, job: dict, progress, total: int, *, processes: int = 1, module: str = "bench.bare") -> dict:
        """A bare loop (``python -m <module>``, ``bench.bare`` or a module built on it) in its own process (or
        ``processes`` of them in one group, each stopped by SIGTERM once the sink is full), timed by the observer;
        a single loop's own clock is kept for reference."""
        # until_signal: the loop outlives the window, so its CPU time can be read at the end like a worker's
        job = {"bootstrap": self.env.bootstrap, "group": unique("kcm-bench-bare"), "expected": total,
               "until_signal": True, **job}
        # each in its own session, like a kcm worker (in the supervisor's): the same scheduler autogroup footing
        procs = [subprocess.Popen([sys.executable, "-m", module, json.dumps(job)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
                 for _ in range(processes)]
        with reaped(procs):
            figures, machine_busy = watch_processes(procs, progress, total)
            outputs = [p.communicate(timeout=120) for p in procs]
        for p, (_out, err) in zip(procs, outputs, strict=True):
            if p.returncode != 0:
                raise RuntimeError(f"bare {job['kind']} loop failed ({p.returncode}): {err[-2000:]}")
        own = json.loads(outputs[0][0].strip().splitlines()[-1]) if processes == 1 else None
        own_rate = (total / (own["last"] - own["first"]) if own and own["first"] and own["last"] > own["first"]
                    else None)
        return {**figures, "own_messages_per_s": own_rate, "machine_busy_pct": machine_busy, "group": job["group"],
                "processes": processes}

    def run_kcm(self, topic: str, processors: list[dict], progress, total: int, *, replicas: int = 1) -> dict:
        """One kcm consumer created and started through the API, timed by the same observer."""
        stack = self.stack()
        client = stack.client
        group = unique("kcm-bench-kcm")
        consumer = client.create_consumer({
            "bootstrap_servers": [self.env.bootstrap], "topic": topic, "consumer_group": group,
            "replicas": replicas, "downstream_processors": processors})
        cid = consumer["id"]
        self.cleanup.push(f"delete consumer {cid}", lambda: client.delete(cid))
        try:
            cpu = CpuWindow(lambda: self.worker_pids(cid, replicas))
            before = cpu_snapshot()
            client.start(cid)
            window = watch(progress, total, alive=lambda: stack.supervisor.alive(), on_first=cpu.first)
            cpu.last()
            machine_busy = busy_percent(before, cpu_snapshot())
            status = client.status(cid)
            pids = [r.get("pid") for r in status["replicas"]]
            replica_messages = [r.get("messages") for r in status["replicas"]]  # heartbeat: up to 1 s old
            stopped_at = time.monotonic()
            client.stop(cid)
            client.wait_status(cid, lambda s: s["state"] == "STOPPED" and not any(r["alive"] for r in s["replicas"]),
                               timeout=60)
            stop_seconds = time.monotonic() - stopped_at
            committed = self.offsets.wait_committed(group, topic, timeout=15)
        finally:
            client.delete(cid)
        return {**_window_figures(window), **cpu.figures(window), "machine_busy_pct": machine_busy, "group": group,
                "pids": pids,
                "stop_seconds": stop_seconds, "replica_messages": replica_messages,
                "offsets_committed": committed}


class CpuWindow:
    """CPU seconds the consuming processes spent between the first and the last sighting, per message: a
    figure a busy machine disturbs far less than wall time. A process that appears after the first
    sighting (a second replica) counts whole, start-up included."""

    def __init__(self, pids):
        self.pids = pids
        self.at_first: dict[int, float] = {}
        self.at_last: dict[int, float] = {}

    def first(self) -> None:
        self.at_first = cpu_of(self.pids())

    def last(self) -> None:
        self.at_last = cpu_of(set(self.pids()) | set(self.at_first))

    def figures(self, window: Window) -> dict:
        spent = sum(cpu - self.at_first.get(pid, 0.0) for pid, cpu in self.at_last.items())
        messages = window.total - window.first_count
        return {"cpu_seconds": spent, "cpu_us_per_message": spent / messages * 1e6 if messages > 0 else None}


def watch_processes(procs: list[subprocess.Popen], progress, total: int) -> tuple[dict, float | None]:
    """Time ``procs`` filling a sink to ``total`` (window and their CPU), then send each SIGTERM: the figures and
    how busy the whole machine was meanwhile. The caller waits for them, inside ``reaped``."""
    cpu = CpuWindow(lambda: [p.pid for p in procs])
    before = cpu_snapshot()
    window = watch(progress, total, alive=lambda: any(p.poll() is None for p in procs), on_first=cpu.first)
    cpu.last()
    machine_busy = busy_percent(before, cpu_snapshot())
    for p in procs:
        p.send_signal(signal.SIGTERM)
    return {**_window_figures(window), **cpu.figures(window)}, machine_busy


@contextmanager
def reaped(procs: list[subprocess.Popen]):
    """Whatever happens inside, no process of ``procs`` outlives the block."""
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


STEADY_FROM = (0.25, 0.5)  # steady-state rates from these fractions of the messages to the end


def _window_figures(window: Window) -> dict:
    return {"messages_per_s": window.messages_per_s,
            "steady_messages_per_s": {str(f): window.steady_messages_per_s(f) for f in STEADY_FROM},
            "seconds": window.seconds,
            "first_seen": window.first_count, "total": window.total}


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout} s")
