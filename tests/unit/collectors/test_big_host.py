"""The 128-CPU fixture host: the checked-in tree is what its script writes, and the collectors read every CPU."""

from __future__ import annotations

import pytest

from comet_agent.collectors.cpu import CpuCollector
from comet_agent.collectors.memory import MemoryCollector
from comet_agent.delivery.payloads import metric_points
from tests.support.big_host_procfs import CPU_COUNT, SCENARIO, expected_percent, write_big_host_procfs
from tests.support.procfs_steps import PROCFS_FIXTURES, ManualClock, ProcfsSteps


def test_the_checked_in_tree_is_what_the_script_writes(tmp_path):
    write_big_host_procfs(tmp_path)
    checked_in = PROCFS_FIXTURES / SCENARIO
    written = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*") if path.is_file())
    assert written == sorted(path.relative_to(checked_in) for path in checked_in.rglob("*") if path.is_file())
    for relative in written:
        assert (checked_in / relative).read_bytes() == (tmp_path / relative).read_bytes(), (
            f"{relative} differs: python -m tests.support.big_host_procfs"
        )


def test_cpu_collector_reports_each_of_128_cpus_under_its_own_name(tmp_path):
    steps, clock = ProcfsSteps(SCENARIO, tmp_path), ManualClock()
    collector = CpuCollector(procfs_root=steps.proc, cgroup_root=str(tmp_path / "no-cgroup"), clock=clock)
    assert collector.sample(0) == []
    steps.advance_to(1)
    clock.advance(10.0)
    [sample] = collector.sample(10_000)
    assert sample.cpu_numbers == tuple(range(CPU_COUNT))
    points = {p["metricName"]: p["metricValue"] for p in metric_points([sample])}
    per_cpu = {
        name: value
        for name, value in points.items()
        if name.startswith("sys.cpu.percent.") and name != "sys.cpu.percent.avg"
    }
    assert per_cpu == {
        f"sys.cpu.percent.{index:02d}": pytest.approx(expected_percent(index)) for index in range(1, CPU_COUNT + 1)
    }
    # the aggregate line is the sum of the per-CPU lines: the overall figure is their mean
    assert points["sys.cpu.percent.avg"] == pytest.approx(
        sum(map(expected_percent, range(1, CPU_COUNT + 1))) / CPU_COUNT
    )


def test_memory_collector_reads_the_big_hosts_swap(tmp_path):
    steps = ProcfsSteps(SCENARIO, tmp_path)
    [sample] = MemoryCollector(procfs_root=steps.proc).sample(0)
    assert sample.total_bytes == 1_056_755_456 * 1024
    assert (sample.swap_total_bytes, sample.swap_used_bytes) == (8_388_604 * 1024, (8_388_604 - 6_291_452) * 1024)
