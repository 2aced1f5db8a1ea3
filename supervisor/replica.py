"""One consumer replica as the supervisor holds it: its state machine, its spec, its child process."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

from schema.replica_machine import Action, Heartbeat, ReplicaMachine, Timings
from schema.spec import PARENT_PID_ENV, SPEC_ENV, WorkerSpec
from schema.states import ProcessState
from supervisor import procstat

log = logging.getLogger("kcm.supervisor")


class Replica:
    def __init__(self, consumer_id: str, index: int, timings: Timings, *, clock=time.monotonic):
        self.consumer_id = consumer_id
        self.index = index
        self.machine = ReplicaMachine(timings, clock=clock)
        self.spec: WorkerSpec | None = None
        self.proc: subprocess.Popen | None = None
        self.started_wall = 0.0
        self.retired = False  # consumer deleted or replicas shrank: drop once STOPPED
        self.epoch: int | None = None  # the slot lease's fencing token it runs under (supervisor/slots.py)
        self.fenced = False  # the slot went to another supervisor: stop, write nothing more, keep its state hash

    @property
    def key(self) -> tuple[str, int]:
        return (self.consumer_id, self.index)

    def want(self, spec: WorkerSpec | None, *, running: bool, generation: int) -> None:
        if spec is not None:
            self.spec = spec
        self.retired = spec is None
        self.machine.configure(desired_running=running and spec is not None, generation=generation)

    # ------------------------------------------------------------------ events
    def reap(self, reason_of) -> int | None:
        """waitpid(WNOHANG) through Popen; on exit feed the machine (with the worker's own last_error)."""
        if self.proc is None:
            return None
        returncode = self.proc.poll()
        if returncode is None:
            return None
        pid = self.proc.pid
        self.proc = None
        before = self.machine.state
        self.machine.finish(returncode, reason_of(pid))
        self._log_exit(pid, returncode, before)
        return returncode

    def step(self, heartbeat: Heartbeat | None, redis_up_for: float | None = float("inf")) -> None:
        before = self.machine.state
        proc = self.proc
        for action in self.machine.tick(heartbeat, redis_up_for=redis_up_for,
                                        sample=lambda: procstat.sample(proc.pid) if proc is not None else None):
            self._act(action)
        self._log_change(before)

    # ------------------------------------------------------------------ actions
    def _act(self, action: Action) -> None:
        if action == Action.SPAWN:
            self._spawn()
        elif action == Action.SIGTERM and self.proc is not None:
            self._signal(self.proc.terminate, "SIGTERM")
        elif action == Action.SIGKILL and self.proc is not None:
            self._signal(self.proc.kill, "SIGKILL")

    def _spawn(self) -> None:
        if self.proc is not None:  # never two live processes for one replica
            raise RuntimeError(f"replica {self.key} still has process {self.proc.pid}")
        assert self.spec is not None and self.spec.generation == self.machine.desired_generation
        env = {**os.environ, SPEC_ENV: self.spec.to_json(), PARENT_PID_ENV: str(os.getpid())}
        try:
            # own session: a terminal's Ctrl-C reaches the supervisor only, which stops workers gracefully
            self.proc = subprocess.Popen([sys.executable, "-m", "workers"], env=env, start_new_session=True,
                                         stdin=subprocess.DEVNULL)
        except OSError as exc:
            self.machine.spawn_failed(f"SpawnFailed: {exc}")
            log.error("SpawnFailed consumer=%s replica=%s: %s", self.consumer_id, self.index, exc)
            return
        self.started_wall = time.time()
        self.machine.spawned(self.proc.pid)
        log.info("WorkerSpawned consumer=%s replica=%s pid=%s generation=%s", self.consumer_id, self.index,
                 self.proc.pid, self.spec.generation)

    def _signal(self, send, name: str) -> None:
        try:
            send()
        except ProcessLookupError:
            return
        log.info("WorkerSignalled consumer=%s replica=%s pid=%s signal=%s reason=%s", self.consumer_id,
                 self.index, self.proc.pid, name, self.machine.last_error or self.machine.state.value)

    # ------------------------------------------------------------------ views
    @property
    def status_state(self) -> ProcessState:
        """The state the consumer status folds: a replica that exited abnormally, failed to start or retries a
        failing batch is trouble until it has run cleanly again (no ACTIVE/INACTIVE flapping in a crash loop)."""
        if self.machine.state in (ProcessState.STARTING, ProcessState.RUNNING) and self.machine.troubled:
            return ProcessState.BACKOFF
        return self.machine.state

    def fields(self) -> dict[str, str]:
        return {**self.machine.snapshot(), "started_at": f"{self.started_wall:.3f}" if self.started_wall else ""}

    def _log_change(self, before) -> None:
        after = self.machine.state
        if after != before:
            level = logging.WARNING if after.value in ("BACKOFF", "FATAL", "EXITED", "WAITING") else logging.INFO
            log.log(level, "ReplicaState consumer=%s replica=%s from=%s to=%s pid=%s last_error=%r",
                    self.consumer_id, self.index, before.value, after.value, self.machine.pid or "",
                    self.machine.last_error)

    def _log_exit(self, pid: int, returncode: int, before) -> None:
        expected = before.value == "STOPPING"
        log.log(logging.INFO if expected else logging.WARNING,
                "WorkerExited consumer=%s replica=%s pid=%s returncode=%s from=%s to=%s last_error=%r",
                self.consumer_id, self.index, pid, returncode, before.value, self.machine.state.value,
                self.machine.last_error)
