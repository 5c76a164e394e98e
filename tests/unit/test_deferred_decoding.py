"""Deferred decoding in the host sampler (``engine/host_sampler.py``): a tick captures, ``drain()``
decodes, and the records are the ones eager sampling gives, over recorded ``/proc`` scenarios."""

from __future__ import annotations

import logging

import pytest

from comet_agent.collectors import CapturingCollector
from comet_agent.engine.host_sampler import DEFER_MAX_TICKS, HostSampler
from comet_agent.records import DiskUsageSample
from tests.support.procfs_steps import ManualClock, ProcfsSteps, fixture_host_collectors


def _sampler(scenario, tmp_path, *, defer_decoding):
    scratch = tmp_path / f"defer-{defer_decoding}"
    scratch.mkdir()
    steps, clock = ProcfsSteps(scenario, scratch), ManualClock()
    collectors = fixture_host_collectors(steps, clock, tmp_path / "no-cgroup")
    return HostSampler(collectors, defer_decoding=defer_decoding), steps, clock


def _ticks(sampler, steps, clock, count):
    """Sample ``count`` ticks stepping through the scenario; returns what ``sample`` gave and what ``drain`` gave."""
    sampled, step = [], 0
    for tick in range(count):
        step = tick % len(list(steps.scenario_dir.glob("step*")))
        steps.advance_to(step)
        clock.advance(1.0)
        sampled += sampler.sample("cpu", 1_000 * (tick + 1))
    return sampled, sampler.drain("cpu")


@pytest.mark.parametrize("scenario", ["vm-2cpu", "big-host-128cpu", "network-counters", "disks-partitions-lvm"])
def test_drained_records_are_the_eager_records(scenario, tmp_path):
    eager, steps, clock = _sampler(scenario, tmp_path, defer_decoding=False)
    deferred, deferred_steps, deferred_clock = _sampler(scenario, tmp_path, defer_decoding=True)
    assert any(isinstance(c, CapturingCollector) for cs in deferred._collectors.values() for c in cs)
    eager_records, eager_drained = _ticks(eager, steps, clock, 6)
    deferred_sampled, deferred_records = _ticks(deferred, deferred_steps, deferred_clock, 6)
    assert eager_drained == []  # nothing is deferred without the option
    assert deferred_sampled == []  # every collector here captures: nothing is decoded at the tick
    assert len(eager_records) > 6
    # The usage of this machine's real "/" may change between the two samplers' readings.
    same = lambda records: sorted(  # noqa: E731
        (repr(r) for r in records if not isinstance(r, DiskUsageSample)), key=lambda text: text
    )
    assert same(deferred_records) == same(eager_records)
    assert sum(isinstance(r, DiskUsageSample) for r in deferred_records) == 6
    assert deferred.drain("cpu") == []  # drained once


def test_captures_are_decoded_every_few_ticks_without_a_drain(tmp_path):
    sampler, steps, clock = _sampler("vm-2cpu", tmp_path, defer_decoding=True)
    for tick in range(DEFER_MAX_TICKS):
        steps.advance_to(tick % 2)
        clock.advance(1.0)
        sampler.sample("cpu", tick)
    assert sampler._pending["cpu"] == []  # bounded: decoded once DEFER_MAX_TICKS captures waited
    assert len(sampler.drain("cpu")) > DEFER_MAX_TICKS


class _Flaky:
    """A capturing collector whose decoding fails on odd captures."""

    name = "flaky"
    cadence = "cpu"

    def __init__(self):
        self.captured = 0

    def capture(self):
        self.captured += 1
        return self.captured

    def decode(self, captured, now_ms):
        if captured % 2:
            raise ValueError(f"garbage in capture {captured}")
        return [("flaky", captured, now_ms)]

    def sample(self, now_ms):
        return self.decode(self.capture(), now_ms)

    def close(self):
        pass


class _Plain:
    """A collector that cannot capture: sampled at the tick, as without deferring."""

    name = "plain"
    cadence = "cpu"

    def sample(self, now_ms):
        return [("plain", now_ms)]

    def close(self):
        pass


def test_a_failing_decode_costs_that_collectors_reading_only(caplog):
    sampler = HostSampler([_Flaky(), _Plain()], defer_decoding=True)
    with caplog.at_level(logging.WARNING, logger="comet_agent.engine.host_sampler"):
        at_ticks = [sampler.sample("cpu", now_ms) for now_ms in (10, 20, 30, 40)]
        drained = sampler.drain("cpu")
    assert at_ticks == [[("plain", 10)], [("plain", 20)], [("plain", 30)], [("plain", 40)]]
    assert drained == [("flaky", 2, 20), ("flaky", 4, 40)]
    assert [r.getMessage() for r in caplog.records] == ["collector flaky failed: garbage in capture 1"]
