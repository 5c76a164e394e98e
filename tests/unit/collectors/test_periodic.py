"""build_periodic_collectors and take_sample on recorded /proc trees."""

from __future__ import annotations

import shutil

from comet_agent.collectors import PeriodicCollector
from comet_agent.collectors.periodic import build_periodic_collectors, take_sample
from comet_agent.records import CpuSample, DiskIoSample, LoadSample, MemorySample, NetworkSample, ProcessTreeSample
from tests.support.procfs_steps import PROCFS_FIXTURES, ManualClock, ProcfsSteps


def test_build_on_a_recorded_vm_reports_what_cannot_run(tmp_path):
    steps = ProcfsSteps("vm-2cpu", tmp_path)
    collectors, unavailable = build_periodic_collectors(
        procfs_root=steps.proc, sysfs_root=steps.sys, cgroup_root=str(tmp_path / "none"), include_gpu=False
    )
    names = [collector.name for collector in collectors]
    # what the recorded VM has, in registration order (later collectors may follow them)
    assert names[:5] == ["cpu", "memory", "load", "disk", "network"]
    assert all(isinstance(collector, PeriodicCollector) for collector in collectors)
    # the recorded tree has no /proc/<our pid>/stat
    assert "agent_self" in unavailable and "stat" in unavailable["agent_self"]
    # every registered collector is either built or named with a reason, never both
    assert not set(names) & set(unavailable) and all(unavailable.values())


def test_build_with_a_pid_adds_the_process_tree(tmp_path):
    steps = ProcfsSteps("process-tree", tmp_path)
    collectors, unavailable = build_periodic_collectors(procfs_root=steps.proc, pid=100, include_gpu=False)
    names = [collector.name for collector in collectors]
    assert "process" in names and "cpu" in names
    assert {"memory", "load", "network"} <= set(unavailable)  # not recorded in this scenario


def test_build_with_a_missing_pid_says_why(tmp_path):
    steps = ProcfsSteps("vm-2cpu", tmp_path)
    _, unavailable = build_periodic_collectors(procfs_root=steps.proc, pid=999_999, include_gpu=False)
    assert unavailable["process"] == f"no process 999999 under {steps.proc}"


def test_build_with_gpu_either_adds_it_or_says_why(tmp_path):
    collectors, unavailable = build_periodic_collectors(directory=tmp_path)
    assert ("gpu" in unavailable) != any(collector.name == "gpu" for collector in collectors)
    if "gpu" in unavailable:
        assert unavailable["gpu"]  # a reason, never an empty string


def test_take_sample_primes_waits_and_samples_every_collector(tmp_path):
    steps, clock = ProcfsSteps("vm-2cpu", tmp_path), ManualClock()
    collectors, _ = build_periodic_collectors(
        procfs_root=steps.proc, sysfs_root=steps.sys, cgroup_root=str(tmp_path / "none"), include_gpu=False, clock=clock
    )
    waited = []

    def sleep(seconds):
        waited.append(seconds)
        clock.advance(seconds)
        steps.advance_to(1)

    records = take_sample(collectors, interval_s=1.0, clock=lambda: 1_700_000_000_000, sleep=sleep)
    assert waited == [1.0]
    kinds = [type(record) for record in records]
    for kind in (CpuSample, MemorySample, LoadSample, DiskIoSample, NetworkSample):
        assert kind in kinds
    assert all(record.taken_at_ms == 1_700_000_000_000 for record in records)
    [disk_io] = [record for record in records if isinstance(record, DiskIoSample)]
    # recorded: vda wrote 40984 sectors during a 20 MiB fsync'ed write
    assert disk_io.write_bytes_per_s == (564632 - 523648) * 512


def test_take_sample_reports_a_failing_collector_and_keeps_the_others(tmp_path):
    live = tmp_path / "proc"
    shutil.copytree(PROCFS_FIXTURES / "vm-2cpu" / "step0" / "proc", live)
    collectors, _ = build_periodic_collectors(procfs_root=str(live), sysfs_root=str(tmp_path), include_gpu=False)
    failures: dict[str, str] = {}

    def sleep(seconds):
        (live / "meminfo").unlink()  # the source vanishes between priming and sampling
        shutil.copy(PROCFS_FIXTURES / "vm-2cpu" / "step1" / "proc" / "stat", live / "stat")

    records = take_sample(collectors, interval_s=0.0, clock=lambda: 5, sleep=sleep, failures=failures)
    assert list(failures) == ["memory"] and "FileNotFoundError" in failures["memory"]
    assert not any(isinstance(record, MemorySample) for record in records)
    assert any(isinstance(record, CpuSample) for record in records)
    assert any(isinstance(record, LoadSample) for record in records)


def test_take_sample_on_this_host_returns_real_records(tmp_path):
    collectors, _ = build_periodic_collectors(directory=tmp_path, include_gpu=False)
    records = take_sample(collectors, interval_s=0.0, sleep=lambda seconds: None)
    assert any(isinstance(record, MemorySample) for record in records)
    assert any(isinstance(record, LoadSample) for record in records)
    assert not any(isinstance(record, ProcessTreeSample) for record in records)  # no pid watched
