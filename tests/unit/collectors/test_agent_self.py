"""AgentSelfCollector: the agent's own CPU and RSS from its recorded stat, and from the live process."""

from __future__ import annotations

import os

import pytest

from comet_agent.collectors import Unavailable
from comet_agent.collectors.agent_self import AgentSelfCollector
from tests.support.procfs_steps import ManualClock, ProcfsSteps


def test_agent_self_cpu_rate_from_two_readings(tmp_path):
    steps, clock = ProcfsSteps("process-tree", tmp_path), ManualClock()
    collector = AgentSelfCollector(
        procfs_root=steps.proc, pid=4242, clock=clock, clock_ticks_per_s=100, page_size_bytes=4096
    )
    assert (collector.name, collector.cadence) == ("agent_self", "cpu")
    [first] = collector.sample(0)
    assert first.cpu_percent is None  # a rate needs two readings
    assert first.rss_bytes == 12_000 * 4096
    steps.advance_to(1)
    clock.advance(0.5)
    [second] = collector.sample(500)
    assert second.cpu_percent == pytest.approx(100.0 * 3 / 100 / 0.5)  # 3 ticks in half a second
    assert second.rss_bytes == 12_500 * 4096
    assert second.pid == 4242


def test_agent_self_reads_the_live_process_by_default():
    collector = AgentSelfCollector()
    [sample] = collector.sample(1)
    assert sample.pid == os.getpid()
    assert sample.rss_bytes > 1024 * 1024  # a Python interpreter holds more than 1 MiB


def test_agent_self_unavailable_without_proc(tmp_path):
    with pytest.raises(Unavailable, match="stat"):
        AgentSelfCollector(procfs_root=str(tmp_path), pid=1)
