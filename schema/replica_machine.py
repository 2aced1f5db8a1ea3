"""The state machine of one consumer replica, modelled on supervisord's ``Subprocess``.

Standard library only and free of I/O: the supervisor feeds it observations (``spawned``, ``finish`` when a
child is reaped, ``tick`` with the latest heartbeat on every loop) and carries out the ``Action`` values it
returns (spawn a worker, SIGTERM, SIGKILL). The clock is injected so tests drive time without sleeping.

    STOPPED -> STARTING -> RUNNING -> STOPPING -> STOPPED
    STARTING --dies before startsecs / never ready--> BACKOFF --delay--> STARTING ... --startretries--> FATAL
    RUNNING --dies--> EXITED --(backoff once it crash-loops)--> STARTING
    STOPPED / EXITED / BACKOFF --spawn due while Redis is down--> WAITING --Redis back--> STARTING
    exit code 78 (EX_CONFIG) -> FATAL at once; a new generation (restart command) leaves FATAL

Liveness is judged only over a span in which the supervisor's own Redis calls succeeded (``redis_up_for``): a
heartbeat missing while Redis was away says nothing about the worker. A missing heartbeat then makes the worker
a suspect, and it is killed only once the process itself confirms the hang (stopped, or its CPU time stood still
for ``hang_confirm_secs``), or after ``hang_hard_secs`` without a heartbeat whatever its CPU does.

A replica is *troubled* from an abnormal exit, a failed start or a heartbeat that reports a failing batch being
retried, until it has run cleanly for ``stable_secs``: the consumer status shows ERROR meanwhile, with the error.
"""
from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from schema.exits import EXIT_CONFIG, EXIT_LEASE_HELD
from schema.states import ProcessState, check_transition

HUNG_WORKER_ERROR = "heartbeat lost (hung worker)"
WAITING_FOR_REDIS = "RedisUnavailable: waiting for Redis before starting the worker (not a failed start)"


class Action(enum.StrEnum):
    SPAWN = "spawn"
    SIGTERM = "sigterm"
    SIGKILL = "sigkill"


@dataclass(frozen=True)
class Heartbeat:
    """What the supervisor read from the worker's heartbeat hash, already matched to the current pid."""

    fresh: bool  # the key exists, belongs to this pid and is younger than its TTL
    ready: bool  # the worker has reached Kafka and is consuming (phase != "starting")
    last_error: str = ""
    retrying: bool = False  # the worker is retrying a failing batch (paused, still polling)


@dataclass(frozen=True)
class ProcessSample:
    """What the process itself says (/proc/<pid>/stat), read only for a suspect."""

    cpu_seconds: float  # utime + stime
    stopped: bool  # SIGSTOPped or traced: it cannot beat, whatever its CPU did


@dataclass(frozen=True)
class Timings:
    startsecs: float = 1.0
    startretries: int = 3
    backoff_max: float = 30.0
    stopwaitsecs: float = 10.0
    backoff_base: float = 1.0
    # a STARTING worker that has not become ready by then is killed and counts as a failed start
    start_timeout: float = 30.0
    # a RUNNING worker that lived this long resets the crash-loop counter and clears the trouble window
    stable_secs: float = 30.0
    # the heartbeat's TTL; a missing heartbeat is judged only after Redis answered the supervisor this long
    heartbeat_ttl: float = 3.0
    liveness_span: float = 3.0
    # a suspect (no heartbeat) whose CPU time stood still this long is hung; past hang_hard_secs, any suspect is
    hang_confirm_secs: float = 3.0
    hang_hard_secs: float = 30.0


def describe_exit(returncode: int) -> str:
    """A readable reason for a reaped child (Popen's convention: negative = killed by that signal)."""
    if returncode < 0:
        import signal

        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"WorkerExited: killed by {name}"
    if returncode == EXIT_CONFIG:
        return "WorkerExited: configuration error (exit 78)"
    if returncode == EXIT_LEASE_HELD:
        return "WorkerExited: another live process holds this replica's lease (exit 75)"
    return f"WorkerExited: exit code {returncode}"


class ReplicaMachine:
    def __init__(self, timings: Timings, *, clock: Callable[[], float] = time.monotonic):
        self.timings = timings
        self.clock = clock
        self.state = ProcessState.STOPPED
        self.pid: int | None = None
        self.generation: int | None = None  # generation of the live (or last) process
        self.desired_running = False
        self.desired_generation = 0
        self.started_at: float | None = None  # clock time of the last spawn
        self.retries = 0  # failed starts in a row (BACKOFF counter)
        self.quick_exits = 0  # RUNNING deaths in a row before stable_secs (crash loop)
        self.delay_until: float | None = None
        self.backoff_delay = 0.0
        self.stop_deadline: float | None = None
        self.kill_sent = False
        self.restarts = 0
        self.last_error = ""
        self.fatal_generation: int | None = None
        self.start_deadline: float | None = None  # STARTING: killed as never ready after this
        self.running_since: float | None = None
        self.trouble_at: float | None = None  # last abnormal exit, failed start or retrying batch
        self.retrying = False  # the worker's last heartbeat said it retries a failing batch
        self.suspect_since: float | None = None  # RUNNING without a heartbeat since then
        self.suspect_cpu: float | None = None
        self.cpu_still_since: float | None = None

    @property
    def troubled(self) -> bool:
        """Exited abnormally, failed to start or retries a batch, and has not run cleanly since."""
        return self.trouble_at is not None

    # ------------------------------------------------------------------ inputs
    def configure(self, *, desired_running: bool, generation: int) -> None:
        """The desired state from the database; applied on the next ``tick``. Idempotent."""
        self.desired_running = desired_running
        self.desired_generation = generation

    def spawned(self, pid: int) -> None:
        """The supervisor started a worker for ``desired_generation`` after a SPAWN action."""
        if self.pid is not None:
            raise RuntimeError(f"replica already has a live process {self.pid}; reap it before spawning")
        if self.state in (ProcessState.STOPPED, ProcessState.EXITED, ProcessState.BACKOFF, ProcessState.FATAL,
                          ProcessState.WAITING):
            if self.state == ProcessState.FATAL or self.generation != self.desired_generation:
                self.retries = 0
                self.fatal_generation = None
                self.trouble_at = None  # a new generation (a restart command) starts with a clean slate
        if self.started_at is not None:
            self.restarts += 1
        self._move(ProcessState.STARTING)
        self.pid = pid
        self.generation = self.desired_generation
        self.started_at = self.clock()
        self.start_deadline = self.started_at + self.timings.start_timeout
        self.delay_until = None
        self.kill_sent = False
        self._clear_suspect()

    def spawn_failed(self, error: str) -> None:
        """Popen itself failed (no such interpreter, fork failed): a failed start."""
        self._move(ProcessState.STARTING)
        self.generation = self.desired_generation
        self.started_at = self.clock()
        self._failed_start(error)

    def finish(self, returncode: int, reason: str = "") -> None:
        """The worker was reaped. ``reason`` is the worker's own last_error, if it left one."""
        now = self.clock()
        state = self.state
        self.pid = None
        self.stop_deadline = None
        self.running_since = None
        self.retrying = False
        self._clear_suspect()
        if state == ProcessState.STOPPING:
            self._move(ProcessState.STOPPED)
            self.trouble_at = None
            return
        error = self._error_text(returncode, reason)
        self.trouble_at = now
        if returncode == EXIT_CONFIG and state in (ProcessState.STARTING, ProcessState.RUNNING):
            self.last_error = error
            self._go_fatal()
        elif state == ProcessState.STARTING:
            self._failed_start(error)
        elif state == ProcessState.RUNNING:
            self.last_error = error
            lived = now - (self.started_at or now)
            self.quick_exits = 0 if lived >= self.timings.stable_secs else self.quick_exits + 1
            # the first unexpected death restarts at once; a crash loop backs off like a failed start
            self.backoff_delay = self._delay(self.quick_exits - 1) if self.quick_exits > 1 else 0.0
            self.delay_until = now + self.backoff_delay
            self._move(ProcessState.EXITED)

    # ------------------------------------------------------------------ periodic
    def tick(self, heartbeat: Heartbeat | None = None, *, redis_up_for: float | None = float("inf"),
             sample: Callable[[], ProcessSample | None] = lambda: None) -> list[Action]:
        """Advance on time and the latest heartbeat (None: unknown, e.g. Redis unreachable).

        ``redis_up_for``: seconds the supervisor's own Redis calls have succeeded without a gap (None: Redis is
        down now). ``sample``: reads the live process's CPU time, called only for a suspect."""
        now = self.clock()
        state = self.state
        wants_other = (not self.desired_running) or self.generation != self.desired_generation
        if heartbeat is not None and heartbeat.fresh and self.pid is not None and not self.kill_sent:
            self.retrying = heartbeat.retrying
            if heartbeat.retrying:
                self.trouble_at = now
            # the worker's own view (Kafka unreachable, topic missing) is the freshest reason; while it runs
            # cleanly, an empty value means it recovered (a troubled replica keeps why it is troubled)
            if heartbeat.last_error or (state == ProcessState.RUNNING and not self.troubled):
                self.last_error = heartbeat.last_error

        if state == ProcessState.STOPPED:
            if not self.desired_running:
                return []
            return self._spawn_or_wait(redis_up_for)

        if state == ProcessState.WAITING:
            if not self.desired_running:
                self._move(ProcessState.STOPPED)
                return []
            return [Action.SPAWN] if redis_up_for is not None else []

        if state in (ProcessState.EXITED, ProcessState.BACKOFF, ProcessState.FATAL):
            if not self.desired_running:
                self._move(ProcessState.STOPPED)
                self.trouble_at = None
                return []
            if state == ProcessState.FATAL:
                # only a new generation (a restart command) gets a FATAL replica going again
                return [Action.SPAWN] if self.desired_generation != self.fatal_generation else []
            if self.generation != self.desired_generation or now >= (self.delay_until or 0):
                return self._spawn_or_wait(redis_up_for)
            return []

        if state == ProcessState.STOPPING:
            if not self.kill_sent and now >= (self.stop_deadline or now):
                self.kill_sent = True
                return [Action.SIGKILL]
            return []

        # STARTING or RUNNING: a live process
        if wants_other:
            self._move(ProcessState.STOPPING)
            self.stop_deadline = now + self.timings.stopwaitsecs
            return [Action.SIGTERM]
        if self.kill_sent:
            return []
        lived = now - (self.started_at or now)
        if state == ProcessState.STARTING:
            if heartbeat is not None and heartbeat.fresh and heartbeat.ready and lived >= self.timings.startsecs:
                self._move(ProcessState.RUNNING)
                self.running_since = now
                self.retries = 0
                self.backoff_delay = 0.0
                if heartbeat.last_error or not self.troubled:
                    self.last_error = heartbeat.last_error
                return []
            if redis_up_for is None or redis_up_for < self.timings.liveness_span:
                # the worker waits for Redis too (its lease): an outage does not use up its start time
                self.start_deadline = max(self.start_deadline or now, now + self.timings.start_timeout)
            if now >= (self.start_deadline or now):
                self.last_error = f"WorkerStartTimeout: not ready after {self.timings.start_timeout:g} s"
                self.kill_sent = True
                return [Action.SIGKILL]
            return []
        # RUNNING: alive means the heartbeat key exists, judged only over a span Redis answered us throughout
        judgeable = heartbeat is not None and redis_up_for is not None and redis_up_for >= self.timings.liveness_span
        if judgeable and not heartbeat.fresh:
            if self._hang_confirmed(now, sample()):
                self.last_error = HUNG_WORKER_ERROR
                self.kill_sent = True
                return [Action.SIGKILL]
            return []
        if judgeable or heartbeat is None:
            self._clear_suspect()  # beating again, or nothing to judge by: no suspicion carries over an outage
        if lived >= self.timings.stable_secs:
            self.quick_exits = 0
        if self.troubled and not self.retrying and now - max(self.trouble_at, self.running_since or now) \
                >= self.timings.stable_secs:
            self.trouble_at = None  # ran cleanly for stable_secs: the trouble is over
            self.last_error = heartbeat.last_error if heartbeat is not None and heartbeat.fresh else ""
        return []

    def _hang_confirmed(self, now: float, process: ProcessSample | None) -> bool:
        """A suspect is hung once the process confirms it: stopped, or CPU time still for hang_confirm_secs."""
        cpu = process.cpu_seconds if process is not None else None
        if self.suspect_since is None:
            self.suspect_since, self.suspect_cpu, self.cpu_still_since = now, cpu, now
        elif cpu != self.suspect_cpu:
            self.suspect_cpu, self.cpu_still_since = cpu, now
        if process is not None and process.stopped:
            return True
        return (now - self.cpu_still_since >= self.timings.hang_confirm_secs
                or now - self.suspect_since >= self.timings.hang_hard_secs)

    def _clear_suspect(self) -> None:
        self.suspect_since = self.suspect_cpu = self.cpu_still_since = None

    def _spawn_or_wait(self, redis_up_for: float | None) -> list[Action]:
        """Spawn now, or wait in WAITING while Redis is down: the worker could not take its lease."""
        if redis_up_for is not None:
            return [Action.SPAWN]
        self.last_error = WAITING_FOR_REDIS
        self._move(ProcessState.WAITING)
        return []

    @property
    def degraded(self) -> str:
        """Why a replica that may look fine is not (published with the state): '' when it is fine."""
        if self.retrying:
            return "retrying"  # a failing batch, partitions paused
        if self.troubled:
            return "recovering"  # exited abnormally or failed to start; not yet stable
        return ""

    # ------------------------------------------------------------------ views
    def snapshot(self) -> dict[str, str]:
        """The fields of the replica state hash this machine owns (strings, as Redis stores them)."""
        return {
            "state": self.state.value,
            "pid": str(self.pid or ""),
            "generation": str(self.generation if self.generation is not None else self.desired_generation),
            "restarts": str(self.restarts),
            "retries": str(self.retries),
            "backoff_delay": f"{self.backoff_delay:g}",
            "last_error": self.last_error,
            "degraded": self.degraded,
        }

    # ------------------------------------------------------------------ internals
    def _move(self, new: ProcessState) -> None:
        check_transition(self.state, new)
        self.state = new

    def _delay(self, attempt: int) -> float:
        return min(self.timings.backoff_base * (2 ** max(attempt, 0)), self.timings.backoff_max)

    def _failed_start(self, error: str) -> None:
        self.last_error = error
        self.trouble_at = self.clock()
        self.retries += 1
        if self.retries > self.timings.startretries:
            self._go_fatal()
            return
        self.backoff_delay = self._delay(self.retries - 1)
        self.delay_until = self.clock() + self.backoff_delay
        self._move(ProcessState.BACKOFF)

    def _go_fatal(self) -> None:
        self.fatal_generation = self.generation
        self.delay_until = None
        self.backoff_delay = 0.0
        self._move(ProcessState.FATAL)

    def _error_text(self, returncode: int, reason: str) -> str:
        if self.kill_sent and self.last_error:
            return self.last_error  # we killed it (hung, start timeout): that is the reason
        exit_text = describe_exit(returncode)
        return f"{exit_text}: {reason}" if reason else exit_text
