"""DiskCollector: whole-disk I/O rates from recorded /proc/diskstats, usage from statvfs."""

from __future__ import annotations

import logging
import os

import pytest

from comet_agent.collectors import Unavailable
from comet_agent.collectors.disk import DiskCollector
from comet_agent.records import DiskIoSample, DiskUsageSample
from tests.support.procfs_steps import ManualClock, ProcfsSteps

MIB = 1024 * 1024
# A recorded ext4 root: 4 KiB fragments, 25.6 M blocks, half free, 10 % of the free space reserved for root.
EXT4_ROOT = os.statvfs_result(
    (4096, 4096, 25_600_000, 12_800_000, 11_520_000, 6_400_000, 6_000_000, 6_000_000, 4096, 255)
)
SMALL_JOB_FS = os.statvfs_result((4096, 4096, 1000, 750, 750, 100, 90, 90, 4096, 255))


def recorded_statvfs(path: str) -> os.statvfs_result:
    if path == "/":
        return EXT4_ROOT
    if path.endswith("job"):
        return SMALL_JOB_FS
    raise FileNotFoundError(2, "No such file or directory", path)


def build(steps: ProcfsSteps, clock: ManualClock, *, sysfs_root=None, directory=None) -> DiskCollector:
    return DiskCollector(
        procfs_root=steps.proc,
        sysfs_root=sysfs_root if sysfs_root is not None else steps.sys,
        directory=directory,
        statvfs=recorded_statvfs,
        clock=clock,
    )


def io_samples(samples):
    return [sample for sample in samples if isinstance(sample, DiskIoSample)]


def test_disk_first_sample_has_usage_but_no_rates(tmp_path):
    steps, clock = ProcfsSteps("disks-partitions-lvm", tmp_path), ManualClock()
    collector = build(steps, clock)
    assert (collector.name, collector.cadence) == ("disk", "cpu")
    samples = collector.sample(10)
    assert io_samples(samples) == []
    assert [sample.role for sample in samples] == ["root"]


@pytest.mark.parametrize("sysfs", ["sysfs", "name-rule"])
def test_disk_rates_count_whole_disks_once(tmp_path, sysfs):
    steps, clock = ProcfsSteps("disks-partitions-lvm", tmp_path), ManualClock()
    # without /sys/block the partition/virtual-device name rule must reach the same answer
    collector = build(steps, clock, sysfs_root=steps.sys if sysfs == "sysfs" else str(tmp_path / "no-sys"))
    collector.sample(0)
    steps.advance_to(1)
    clock.advance(2.0)
    [io] = io_samples(collector.sample(2_000))
    # sda read 1 MiB, wrote 2 MiB; nvme0n1 read 1 MiB, wrote 4 MiB; partitions and dm-0 mirror them
    assert io.read_bytes_per_s == pytest.approx(2 * MIB / 2.0)
    assert io.write_bytes_per_s == pytest.approx(6 * MIB / 2.0)
    assert io.taken_at_ms == 2_000


def test_disk_counter_going_backwards_gives_no_rate_for_that_interval(tmp_path):
    steps, clock = ProcfsSteps("disks-partitions-lvm", tmp_path), ManualClock()
    collector = build(steps, clock)
    collector.sample(0)
    steps.advance_to(1)
    clock.advance(1.0)
    collector.sample(1_000)
    steps.advance_to(2)  # sda replaced: its counters restart near zero
    clock.advance(1.0)
    samples = collector.sample(2_000)
    assert io_samples(samples) == []
    assert [sample.role for sample in samples] == ["root"]


def test_disk_usage_of_root_and_job_directory(tmp_path):
    steps, clock = ProcfsSteps("disks-partitions-lvm", tmp_path), ManualClock()
    collector = build(steps, clock, directory=tmp_path / "job")
    root, job = collector.sample(42)
    assert root == DiskUsageSample(
        role="root",
        path="/",
        total_bytes=25_600_000 * 4096,
        used_bytes=12_800_000 * 4096,
        free_bytes=11_520_000 * 4096,
        used_percent=pytest.approx(100 * 12_800_000 / (12_800_000 + 11_520_000)),
        taken_at_ms=42,
    )
    assert (job.role, job.path, job.used_bytes, job.used_percent) == ("job", str(tmp_path / "job"), 250 * 4096, 25.0)


def test_disk_usage_of_a_vanished_directory_is_skipped_and_logged_once(tmp_path, caplog):
    steps, clock = ProcfsSteps("disks-partitions-lvm", tmp_path), ManualClock()
    collector = build(steps, clock, directory=tmp_path / "removed")
    with caplog.at_level(logging.INFO, logger="comet_agent.collectors.disk"):
        first = collector.sample(1)
        second = collector.sample(2)
    assert [sample.role for sample in first + second if isinstance(sample, DiskUsageSample)] == ["root", "root"]
    assert sum("removed" in message for message in caplog.messages) == 1


def test_disk_usage_on_the_real_filesystem_is_consistent(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "diskstats").write_text("")
    collector = DiskCollector(procfs_root=str(tmp_path / "proc"), sysfs_root=str(tmp_path), directory=tmp_path)
    root, job = collector.sample(1)
    for usage in (root, job):
        assert 0 <= usage.used_bytes <= usage.total_bytes
        assert 0 <= usage.free_bytes <= usage.total_bytes
        assert 0.0 <= usage.used_percent <= 100.0


def test_disk_without_diskstats_still_reports_usage(tmp_path):
    collector = DiskCollector(procfs_root=str(tmp_path), sysfs_root=str(tmp_path), statvfs=recorded_statvfs)
    assert [type(sample) for sample in collector.sample(1)] == [DiskUsageSample]
    assert [type(sample) for sample in collector.sample(2)] == [DiskUsageSample]


def test_disk_unavailable_without_diskstats_and_root(tmp_path):
    with pytest.raises(Unavailable, match="no disk I/O"):
        DiskCollector(procfs_root=str(tmp_path), root_path=str(tmp_path / "missing"), statvfs=recorded_statvfs)
