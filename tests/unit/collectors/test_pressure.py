"""PressureCollector and parse_pressure on recorded and hand-written /proc/pressure trees."""

from __future__ import annotations

import pytest

from comet_agent.collectors import Unavailable
from comet_agent.collectors.periodic import build_periodic_collectors
from comet_agent.collectors.pressure import PressureCollector, PressureSample
from comet_agent.delivery.payloads import metric_points
from comet_agent.sources.procfs import PressureTotals, parse_pressure
from tests.support.procfs_steps import ManualClock, ProcfsSteps

T = 1_764_300_000_000


def test_parse_reads_the_total_of_both_lines():
    text = (
        "some avg10=2.81 avg60=2.44 avg300=3.32 total=53662003\nfull avg10=0.49 avg60=0.48 avg300=2.00 total=40713160\n"
    )
    assert parse_pressure(text) == PressureTotals(some_us=53_662_003, full_us=40_713_160)


def test_parse_cpu_before_linux_5_13_has_no_full_line():
    assert parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n") == PressureTotals(some_us=0, full_us=None)


@pytest.mark.parametrize("text", ["", "full avg10=0.00 avg60=0.00 avg300=0.00 total=5\n", "some avg10=0.00\n"])
def test_parse_refuses_text_without_a_some_total(text):
    with pytest.raises(ValueError, match="some"):
        parse_pressure(text)


def test_recorded_vm_during_a_fsynced_write(tmp_path):
    steps, clock = ProcfsSteps("vm-2cpu", tmp_path), ManualClock()
    collector = PressureCollector(procfs_root=steps.proc, clock=clock)
    assert (collector.name, collector.cadence) == ("pressure", "cpu")
    assert collector.sample(T) == []  # a share of an interval needs two readings
    steps.advance_to(1)
    clock.advance(1.0)
    [sample] = collector.sample(T + 1000)
    # recorded 1 s apart on a 6.18 kernel around a 20 MiB fsync'ed write: the totals grew by
    # cpu some 6529 us, memory 0, io some 15405 us and io full 15277 us
    assert sample == PressureSample(
        cpu_some_percent=pytest.approx(0.6529),
        memory_some_percent=0.0,
        memory_full_percent=0.0,
        io_some_percent=pytest.approx(1.5405),
        io_full_percent=pytest.approx(1.5277),
        taken_at_ms=T + 1000,
    )


def test_a_kernel_before_5_13_under_a_cpu_quota(tmp_path):
    # hand-written: cpu has no full line. Over 2 s the totals grew by cpu some 250 ms (the 2-CPU
    # quota keeps runnable tasks waiting), memory some 30 ms and full 10 ms, io some 120 ms and full 50 ms.
    steps, clock = ProcfsSteps("cgroup-quota", tmp_path), ManualClock()
    collector = PressureCollector(procfs_root=steps.proc, clock=clock)
    collector.sample(T)
    steps.advance_to(1)
    clock.advance(2.0)
    [sample] = collector.sample(T + 2000)
    assert (
        sample.cpu_some_percent,
        sample.memory_some_percent,
        sample.memory_full_percent,
        sample.io_some_percent,
        sample.io_full_percent,
    ) == pytest.approx((12.5, 1.5, 0.5, 6.0, 2.5))


def test_points_carry_our_names_and_leave_out_what_is_unknown():
    sample = PressureSample(
        cpu_some_percent=25.0,
        memory_some_percent=3.0,
        memory_full_percent=None,
        io_some_percent=12.0,
        io_full_percent=5.0,
        taken_at_ms=T,
    )
    assert metric_points([sample]) == [
        {"metricName": "sys.pressure.cpu.some.percent", "metricValue": 25.0, "timestamp": T},
        {"metricName": "sys.pressure.memory.some.percent", "metricValue": 3.0, "timestamp": T},
        {"metricName": "sys.pressure.io.some.percent", "metricValue": 12.0, "timestamp": T},
        {"metricName": "sys.pressure.io.full.percent", "metricValue": 5.0, "timestamp": T},
    ]


def _write_pressure(root, cpu_some_us, memory_us, io_us):
    directory = root / "pressure"
    directory.mkdir(parents=True, exist_ok=True)
    line = "{} avg10=0.00 avg60=0.00 avg300=0.00 total={}\n"
    (directory / "cpu").write_text(line.format("some", cpu_some_us))
    (directory / "memory").write_text(line.format("some", memory_us[0]) + line.format("full", memory_us[1]))
    (directory / "io").write_text(line.format("some", io_us[0]) + line.format("full", io_us[1]))


def test_a_stall_over_the_whole_interval_reads_100_and_a_total_gone_backwards_reads_nothing(tmp_path):
    clock = ManualClock()
    _write_pressure(tmp_path, 1_000_000, (500, 500), (9_000_000, 0))
    collector = PressureCollector(procfs_root=str(tmp_path), clock=clock)
    collector.sample(T)
    # the kernel read a few microseconds after our clock: a whole-interval stall is a hair over 1 s
    _write_pressure(tmp_path, 2_000_003, (500, 500), (8_000_000, 0))
    clock.advance(1.0)
    [sample] = collector.sample(T + 1000)
    assert sample.cpu_some_percent == 100.0
    assert (sample.memory_some_percent, sample.memory_full_percent, sample.io_full_percent) == (0.0, 0.0, 0.0)
    assert sample.io_some_percent is None  # went backwards: no honest figure for this interval


def test_no_interval_no_sample(tmp_path):
    clock = ManualClock()
    _write_pressure(tmp_path, 0, (0, 0), (0, 0))
    collector = PressureCollector(procfs_root=str(tmp_path), clock=clock)
    collector.sample(T)
    assert collector.sample(T) == []  # the clock did not move
    collector.close()
    assert collector.sample(T) == []  # closing forgets the previous reading


def test_a_kernel_without_psi_is_unavailable_and_the_rest_carry_on(tmp_path):
    steps = ProcfsSteps("no-psi", tmp_path)
    with pytest.raises(Unavailable, match=r"no .*/pressure: this kernel gives no pressure stall information"):
        PressureCollector(procfs_root=steps.proc)
    collectors, unavailable = build_periodic_collectors(
        procfs_root=steps.proc, sysfs_root=str(tmp_path / "none"), cgroup_root=str(tmp_path / "none"), include_gpu=False
    )
    assert "CONFIG_PSI" in unavailable["pressure"]
    assert {"memory", "load"} <= {collector.name for collector in collectors}


def test_a_pressure_directory_it_cannot_read_is_unavailable_with_the_reason(tmp_path):
    (tmp_path / "pressure").mkdir()
    (tmp_path / "pressure" / "cpu").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    with pytest.raises(Unavailable, match="cannot read pressure stall information in .*: No such file"):
        PressureCollector(procfs_root=str(tmp_path))
