"""LoadCollector on recorded /proc/loadavg."""

from __future__ import annotations

import pytest

from comet_agent.collectors import Unavailable
from comet_agent.collectors.load import LoadCollector
from comet_agent.records import LoadSample
from tests.support.procfs_steps import ProcfsSteps


def test_load_sample_from_recorded_vm(tmp_path):
    steps = ProcfsSteps("vm-2cpu", tmp_path)
    collector = LoadCollector(procfs_root=steps.proc)
    assert (collector.name, collector.cadence) == ("load", "cpu")
    assert collector.sample(7) == [LoadSample(load_1m=0.01, load_5m=0.06, load_15m=0.03, taken_at_ms=7)]


def test_load_unavailable_without_loadavg(tmp_path):
    with pytest.raises(Unavailable, match="loadavg"):
        LoadCollector(procfs_root=str(tmp_path))


def test_load_unavailable_with_malformed_loadavg(tmp_path):
    (tmp_path / "loadavg").write_text("garbage\n")
    with pytest.raises(Unavailable, match="three load averages"):
        LoadCollector(procfs_root=str(tmp_path))
