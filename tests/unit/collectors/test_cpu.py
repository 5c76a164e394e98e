"""CpuCollector on recorded /proc/stat sequences: first call, hotplug, counters going backwards, cgroup quota."""

from __future__ import annotations

import pytest

from comet_agent.collectors import PeriodicCollector, Unavailable
from comet_agent.collectors.cpu import CpuCollector
from tests.support.procfs_steps import ManualClock, ProcfsSteps


def test_cpu_is_a_periodic_collector_on_the_cpu_cadence(tmp_path):
    steps = ProcfsSteps("vm-2cpu", tmp_path)
    collector = CpuCollector(procfs_root=steps.proc, cgroup_root=str(tmp_path / "no-cgroup"))
    assert isinstance(collector, PeriodicCollector)
    assert (collector.name, collector.cadence) == ("cpu", "cpu")


def test_cpu_sample_empty_on_first_call(tmp_path):
    steps = ProcfsSteps("vm-2cpu", tmp_path)
    collector = CpuCollector(procfs_root=steps.proc, cgroup_root=str(tmp_path / "no-cgroup"))
    assert collector.sample(1_000) == []


def test_cpu_sample_from_recorded_vm_deltas(tmp_path):
    steps = ProcfsSteps("vm-2cpu", tmp_path)
    collector = CpuCollector(procfs_root=steps.proc, cgroup_root=str(tmp_path / "no-cgroup"))
    collector.sample(1_000)
    steps.advance_to(1)
    [sample] = collector.sample(2_000)
    # step0 -> step1: cpu0 busy 1 of 111 ticks, cpu1 busy 10 of 110, the "cpu" line 12 of 222
    assert sample.cpu_numbers == (0, 1)
    assert sample.per_cpu_percent == pytest.approx((100 * 1 / 111, 100 * 10 / 110))
    assert sample.overall_percent == pytest.approx(100 * 12 / 222)
    assert sample.overall_source == "host"
    assert sample.host_overall_percent == sample.overall_percent
    assert sample.cgroup_quota_cpus is None
    assert sample.taken_at_ms == 2_000


def test_cpu_hotplug_reports_only_cpus_present_in_both_readings_in_cpu_order(tmp_path):
    steps = ProcfsSteps("cpu-hotplug", tmp_path)
    collector = CpuCollector(procfs_root=steps.proc, cgroup_root=str(tmp_path / "no-cgroup"))
    collector.sample(0)
    steps.advance_to(1)
    [sample] = collector.sample(1)
    # cpu2 went offline and cpu4 came online: neither has two readings
    assert sample.cpu_numbers == (0, 1, 3)
    assert sample.per_cpu_percent == pytest.approx((100.0, 0.0, 50.0))


def test_cpu_counter_going_backwards_gives_no_figure_for_that_cpu(tmp_path):
    steps = ProcfsSteps("cpu-hotplug", tmp_path)
    collector = CpuCollector(procfs_root=steps.proc, cgroup_root=str(tmp_path / "no-cgroup"))
    collector.sample(0)
    steps.advance_to(1)
    collector.sample(1)
    steps.advance_to(2)
    [sample] = collector.sample(2)
    # cpu1's counters dropped: no negative, no fake 0.0, so it is absent; cpu4 now has a baseline.
    assert sample.cpu_numbers == (0, 3, 4)
    assert all(0.0 <= percent <= 100.0 for percent in sample.per_cpu_percent)
    assert sample.per_cpu_percent[2] == pytest.approx(25 / 100 * 100)


def test_cpu_no_sample_when_no_time_passed(tmp_path):
    steps = ProcfsSteps("vm-2cpu", tmp_path)
    collector = CpuCollector(procfs_root=steps.proc, cgroup_root=str(tmp_path / "no-cgroup"))
    collector.sample(0)
    assert collector.sample(1) == []  # same file read twice: zero ticks elapsed


def test_cpu_overall_is_relative_to_the_cgroup_quota_of_the_watched_job(tmp_path):
    steps = ProcfsSteps("cgroup-quota", tmp_path)
    clock = ManualClock()
    collector = CpuCollector(procfs_root=steps.proc, cgroup_root=steps.cgroup, pid=300, clock=clock)
    assert collector.cgroup_quota_cpus == 2.0
    collector.sample(0)
    steps.advance_to(1)
    clock.advance(1.0)
    [sample] = collector.sample(1_000)
    # 1.5 s of CPU in 1 s of wall time against a quota of 2 CPUs
    assert sample.overall_source == "cgroup"
    assert sample.overall_percent == pytest.approx(75.0)
    # the host, 8 CPUs: 160 busy of 800 ticks
    assert sample.host_overall_percent == pytest.approx(20.0)
    assert sample.cgroup_quota_cpus == 2.0
    assert len(sample.cpu_numbers) == 8


def test_cpu_without_pid_uses_the_agents_own_cgroup(tmp_path):
    steps = ProcfsSteps("cgroup-quota", tmp_path)
    # the agent sits at "/" where no cpu.max exists: host-wide figures
    collector = CpuCollector(procfs_root=steps.proc, cgroup_root=steps.cgroup)
    assert collector.cgroup_quota_cpus is None


def test_cpu_every_counter_going_backwards_gives_no_sample(tmp_path):
    steps = ProcfsSteps("cgroup-quota", tmp_path)
    clock = ManualClock()
    steps.advance_to(1)
    collector = CpuCollector(procfs_root=steps.proc, cgroup_root=steps.cgroup, pid=300, clock=clock)
    collector.sample(0)
    steps.advance_to(0)  # usage_usec and host ticks drop: a reset
    clock.advance(1.0)
    assert collector.sample(1_000) == []


def test_cpu_unavailable_without_proc_stat(tmp_path):
    with pytest.raises(Unavailable, match="stat"):
        CpuCollector(procfs_root=str(tmp_path))
