"""The scheduler: named jobs at cadences that can change while it runs.

Jobs are ``(name, interval_s, action)``. One daemon thread wakes for the next due job and runs it.
Intervals come from a monotonic clock, so wall-clock jumps (NTP, suspend) never bunch or skip
ticks; timestamps inside records come from the wall clock, which is the jobs' business. Both the
clock and the wait are injected, so tests drive time by hand and never sleep.

Rules:
- A job's interval can change at any time (``set_interval``); the new interval applies from the
  job's next tick (the server's ``update_status()`` reply takes effect that way).
- A job still running when its next tick comes skips that tick (counted in ``skipped``), rather
  than queueing up: a slow sample never snowballs. Jobs marked ``blocking=True`` (network calls)
  run on one long-lived worker thread (started with the first of them), so they cannot delay the
  others and no thread is created per run.
- An exception escaping a job is caught, logged once per distinct message, and counted in
  ``failures``; the job keeps its cadence.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One scheduled job. ``next_due_s`` is on the scheduler's monotonic clock."""

    name: str
    interval_s: float
    action: Callable[[], object]
    blocking: bool = False
    next_due_s: float = 0.0
    runs: int = 0
    skipped: int = 0
    failures: int = 0
    running: bool = False
    last_error: Optional[str] = None
    _logged_errors: set[str] = field(default_factory=set)


class Scheduler:
    """Runs jobs at their cadences on one daemon thread.

    Args:
        clock: monotonic seconds (default ``time.monotonic``).
        wait: ``wait(timeout_s) -> bool`` that returns True when the scheduler is asked to stop
            (default: waits on an internal ``threading.Event``). Tests pass a fake that advances
            the fake clock instead of sleeping.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, wait: Optional[Callable[[float], bool]] = None):
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._wait = wait
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._blocking_queue: "queue.SimpleQueue[Optional[Job]]" = queue.SimpleQueue()
        self._worker: Optional[threading.Thread] = None

    # -- configuration ---------------------------------------------------------------------

    def add(
        self,
        name: str,
        interval_s: float,
        action: Callable[[], object],
        *,
        blocking: bool = False,
        first_run_in_s: float = 0.0,
    ) -> Job:
        """Add a job that first runs ``first_run_in_s`` from now, then every ``interval_s`` seconds."""
        if interval_s <= 0:
            raise ValueError(f"interval of job {name!r} must be positive, got {interval_s}")
        job = Job(name, float(interval_s), action, blocking, next_due_s=self._clock() + first_run_in_s)
        with self._lock:
            self._jobs[name] = job
        self._wake.set()
        return job

    def set_interval(self, name: str, interval_s: float) -> None:
        """Change a job's interval; the job's next tick is rescheduled from its last run."""
        if interval_s <= 0:
            raise ValueError(f"interval of job {name!r} must be positive, got {interval_s}")
        with self._lock:
            job = self._jobs[name]
            if job.interval_s == interval_s:
                return
            last_run = job.next_due_s - job.interval_s
            job.interval_s = float(interval_s)
            job.next_due_s = last_run + job.interval_s  # in the past: runs at the next wake-up
        self._wake.set()

    def interval(self, name: str) -> float:
        return self._jobs[name].interval_s

    def jobs(self) -> dict[str, Job]:
        with self._lock:
            return dict(self._jobs)

    # -- running ---------------------------------------------------------------------------

    def run_due(self) -> float:
        """Run every job that is due now; return seconds until the next one is due.

        The thread calls this in a loop; tests call it directly with a fake clock.
        """
        now = self._clock()
        with self._lock:
            due = [j for j in self._jobs.values() if j.next_due_s <= now]
        for job in sorted(due, key=lambda j: j.next_due_s):
            # Advance by whole intervals so a late tick is not followed by a burst of catch-up ticks.
            missed = int((now - job.next_due_s) // job.interval_s)
            job.next_due_s += (missed + 1) * job.interval_s
            if job.running:
                job.skipped += 1 + missed
                continue
            job.skipped += missed
            if job.blocking:
                job.running = True
                self._start_worker()
                self._blocking_queue.put(job)
            else:
                self._run_job(job)
        with self._lock:
            if not self._jobs:
                return 1.0
            return max(0.0, min(j.next_due_s for j in self._jobs.values()) - self._clock())

    def _run_job(self, job: Job) -> None:
        job.running = True
        try:
            job.action()
            job.runs += 1
        except Exception as exc:  # a job's failure ends here: logged once per message, counted
            job.failures += 1
            message = f"{type(exc).__name__}: {exc}"
            job.last_error = message
            if message not in job._logged_errors and len(job._logged_errors) < 20:
                job._logged_errors.add(message)
                log.warning("job %s failed: %s", job.name, message)
            else:
                log.debug("job %s failed again: %s", job.name, message)
        finally:
            job.running = False

    def _start_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="comet-agent-worker", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            job = self._blocking_queue.get()
            if job is None:
                return
            self._run_job(job)

    def start(self) -> None:
        """Start the scheduler thread (a daemon: it never keeps the process alive)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="comet-agent-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            delay = self.run_due()
            if self._wait is not None:
                if self._wait(delay):
                    return
            else:
                self._wake.wait(delay)
                self._wake.clear()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and wait up to ``timeout_s`` for it; safe to call twice or before start."""
        self._stop.set()
        self._wake.set()
        self._blocking_queue.put(None)  # ends the worker once the blocking run in hand (if any) returns
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        """True while the scheduler thread runs."""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()
