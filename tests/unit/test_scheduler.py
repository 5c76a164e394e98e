"""The scheduler follows cadences on an injected clock: changes apply from the next tick, slow jobs skip."""

from __future__ import annotations

import threading

from comet_agent.engine.scheduler import Scheduler


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


def run_for(scheduler: Scheduler, clock: FakeClock, seconds: float, step_s: float = 0.5) -> None:
    end = clock.now_s + seconds
    while clock.now_s < end:
        scheduler.run_due()
        clock.advance(step_s)


def test_jobs_run_at_their_cadence():
    clock = FakeClock()
    sched = Scheduler(clock=clock)
    ticks = {"cpu": [], "gpu": []}
    sched.add("cpu", 2, lambda: ticks["cpu"].append(clock()))
    sched.add("gpu", 5, lambda: ticks["gpu"].append(clock()))
    run_for(sched, clock, 10)
    assert ticks["cpu"] == [1000, 1002, 1004, 1006, 1008]
    assert ticks["gpu"] == [1000, 1005]


def test_changed_interval_applies_from_next_tick():
    clock = FakeClock()
    sched = Scheduler(clock=clock)
    ticks = []
    sched.add("cpu", 10, lambda: ticks.append(clock()))
    run_for(sched, clock, 12)
    sched.set_interval("cpu", 3)
    run_for(sched, clock, 10)
    # Last run at 1010 under the old cadence; from then on every 3 s.
    assert ticks == [1000, 1010, 1013, 1016, 1019]
    assert sched.interval("cpu") == 3


def test_late_wakeup_skips_missed_ticks_instead_of_bursting():
    clock = FakeClock()
    sched = Scheduler(clock=clock)
    ticks = []
    job = sched.add("cpu", 1, lambda: ticks.append(clock()))
    sched.run_due()
    clock.advance(5.5)  # the thread was starved for 5.5 s
    sched.run_due()
    sched.run_due()
    assert ticks == [1000, 1005.5]
    assert job.skipped == 4


def test_failing_job_is_counted_and_keeps_its_cadence(caplog):
    clock = FakeClock()
    sched = Scheduler(clock=clock)

    def boom():
        raise RuntimeError("no such device")

    job = sched.add("gpu", 1, boom)
    run_for(sched, clock, 3)
    assert job.failures == 3
    assert job.last_error == "RuntimeError: no such device"
    assert sum("no such device" in r.getMessage() for r in caplog.records if r.levelname == "WARNING") == 1


def test_blocking_job_still_running_skips_its_tick():
    clock = FakeClock()
    sched = Scheduler(clock=clock)
    release = threading.Event()
    started = threading.Event()

    def slow():
        started.set()
        release.wait(10)

    job = sched.add("heartbeat", 1, slow, blocking=True)
    sched.run_due()
    assert started.wait(5)
    clock.advance(1)
    sched.run_due()  # still running: skipped
    assert job.skipped == 1
    release.set()
    for _ in range(100):
        if not job.running:
            break
        threading.Event().wait(0.01)
    assert job.runs == 1


def test_thread_stops_promptly_and_stop_is_idempotent():
    sched = Scheduler()
    ran = threading.Event()
    sched.add("x", 60, ran.set)
    sched.start()
    assert ran.wait(5)
    sched.stop(timeout_s=5)
    sched.stop(timeout_s=5)
    assert sched.stopped
