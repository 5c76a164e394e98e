"""MemoryCollector on recorded and literal /proc/meminfo."""

from __future__ import annotations

import pytest

from comet_agent.collectors import Unavailable
from comet_agent.collectors.memory import MemoryCollector, memory_sample_from_meminfo
from comet_agent.sources.procfs import parse_meminfo
from tests.support.procfs_steps import ProcfsSteps


def test_memory_sample_from_recorded_vm(tmp_path):
    steps = ProcfsSteps("vm-2cpu", tmp_path)
    collector = MemoryCollector(procfs_root=steps.proc)
    assert (collector.name, collector.cadence) == ("memory", "cpu")
    [sample] = collector.sample(5_000)
    assert sample.total_bytes == 24684096 * 1024
    assert sample.available_bytes == 24407812 * 1024
    # Comet's definition: used = total - available
    assert sample.used_bytes == (24684096 - 24407812) * 1024
    assert sample.used_percent == pytest.approx(100 * (24684096 - 24407812) / 24684096)
    assert (sample.swap_total_bytes, sample.swap_used_bytes, sample.swap_used_percent) == (0, 0, None)
    assert sample.taken_at_ms == 5_000


def test_memory_swap_in_use():
    meminfo = parse_meminfo("MemTotal: 1000 kB\nMemAvailable: 400 kB\nSwapTotal: 2000 kB\nSwapFree: 1500 kB\n")
    sample = memory_sample_from_meminfo(meminfo, 1)
    assert sample.swap_total_bytes == 2000 * 1024
    assert sample.swap_used_bytes == 500 * 1024
    assert sample.swap_used_percent == pytest.approx(25.0)


def test_memory_estimates_available_on_kernels_without_memavailable():
    meminfo = parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n")
    sample = memory_sample_from_meminfo(meminfo, 1)
    assert sample.available_bytes == 400 * 1024
    assert sample.used_bytes == 600 * 1024


def test_memory_without_memtotal_is_an_error():
    with pytest.raises(ValueError, match="MemTotal"):
        memory_sample_from_meminfo({"MemFree": 1}, 1)


def test_memory_unavailable_without_meminfo(tmp_path):
    with pytest.raises(Unavailable, match="meminfo"):
        MemoryCollector(procfs_root=str(tmp_path))
