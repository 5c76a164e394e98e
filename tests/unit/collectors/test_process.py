"""ProcessTreeCollector on a recorded process tree: descendants, new and exited children, pid reuse, GPU memory."""

from __future__ import annotations

import logging

import pytest

from comet_agent.collectors import Unavailable
from comet_agent.collectors.process import ProcessTreeCollector
from tests.support.procfs_steps import ManualClock, ProcfsSteps

PAGE_SIZE_BYTES = 4096
GIB = 1024**3


def build(tmp_path, **kwargs):
    steps, clock = ProcfsSteps("process-tree", tmp_path), ManualClock()
    kwargs.setdefault("gpu_memory_by_pid", lambda: {})
    collector = ProcessTreeCollector(
        100, procfs_root=steps.proc, clock=clock, clock_ticks_per_s=100, page_size_bytes=PAGE_SIZE_BYTES, **kwargs
    )
    return steps, clock, collector


def test_process_first_sample_sums_the_whole_tree_without_a_cpu_rate(tmp_path):
    _, _, collector = build(tmp_path)
    assert (collector.name, collector.cadence) == ("process", "cpu")
    [sample] = collector.sample(1_000)
    # python 100, its workers 101 and 102, and 103 (a child of 101); sshd 200 and the agent are not in the tree
    assert sample.root_pid == 100
    assert sample.process_count == 4
    assert sample.cpu_percent is None
    assert sample.rss_bytes == (250_000 + 60_000 + 60_000 + 500) * PAGE_SIZE_BYTES
    assert sample.threads == 24 + 4 + 4 + 1
    assert sample.open_files == 40 + 10 + 10 + 3
    assert sample.taken_at_ms == 1_000


def test_process_cpu_rate_counts_new_children_and_skips_exited_ones(tmp_path):
    steps, clock, collector = build(tmp_path)
    collector.sample(0)
    steps.advance_to(1)
    clock.advance(2.0)
    [sample] = collector.sample(2_000)
    # 100: +200 ticks, 101: +60, 103: +0, 104 (new, born this interval): all its 40; 102 exited
    assert sample.cpu_percent == pytest.approx(100.0 * 300 / 100 / 2.0)
    assert sample.process_count == 4
    assert sample.rss_bytes == (260_000 + 61_000 + 500 + 50_000) * PAGE_SIZE_BYTES
    assert sample.open_files == 41 + 10 + 3 + 9


def test_process_sample_empty_after_the_watched_pid_was_reused(tmp_path, caplog):
    steps, clock, collector = build(tmp_path)
    collector.sample(0)
    steps.advance_to(2)  # pid 100 now belongs to another process (different start time)
    with caplog.at_level(logging.INFO, logger="comet_agent.collectors.process"):
        assert collector.sample(1) == []
        assert collector.sample(2) == []
    assert sum("exited" in message for message in caplog.messages) == 1


def test_process_gpu_memory_of_tree_processes_by_gpu_index(tmp_path):
    recorded = {100: {0: GIB}, 104: {0: GIB // 2, 1: 2 * GIB}, 200: {0: 999}}
    steps, clock, collector = build(tmp_path, gpu_memory_by_pid=lambda: recorded)
    steps.advance_to(1)
    [sample] = collector.sample(0)
    assert sample.gpu_memory_used_bytes_by_index == {0: GIB + GIB // 2, 1: 2 * GIB}


def test_process_gpu_failure_costs_only_the_gpu_figures(tmp_path, caplog):
    def failing():
        raise RuntimeError("NVML: GPU is lost")

    _, _, collector = build(tmp_path, gpu_memory_by_pid=failing)
    with caplog.at_level(logging.INFO, logger="comet_agent.collectors.process"):
        [first] = collector.sample(0)
        [second] = collector.sample(1)
    assert first.gpu_memory_used_bytes_by_index == {} and second.rss_bytes > 0
    assert sum("GPU is lost" in message for message in caplog.messages) == 1


def test_process_default_gpu_source_tolerates_a_host_without_nvml(tmp_path):
    steps, clock = ProcfsSteps("process-tree", tmp_path), ManualClock()
    collector = ProcessTreeCollector(100, procfs_root=steps.proc, clock=clock)
    [sample] = collector.sample(0)
    assert isinstance(sample.gpu_memory_used_bytes_by_index, dict)
    assert sample.process_count == 4


def test_process_unavailable_for_a_missing_pid(tmp_path):
    steps = ProcfsSteps("process-tree", tmp_path)
    with pytest.raises(Unavailable, match="no process 999"):
        ProcessTreeCollector(999, procfs_root=steps.proc)


def test_process_gpu_memory_through_the_nvml_gateway_on_a_recorded_a100(tmp_path):
    from comet_agent.sources.nvml import NvmlGateway, gpu_memory_by_pid
    from tests.support.fake_nvml import build_fake_nvml, load_recording

    recording = load_recording("a100-sxm4-80gb")
    recording["devices"][0]["compute_processes"] = [
        {"pid": 100, "used_gpu_memory": 3 * GIB},
        {"pid": 200, "used_gpu_memory": GIB},
    ]
    recording["devices"][1]["compute_processes"] = [{"pid": 101, "used_gpu_memory": GIB}]
    for device in recording["devices"][2:]:
        device["compute_processes"] = []
    gateway = NvmlGateway(module=build_fake_nvml(recording), environ={})
    _, _, collector = build(tmp_path, gpu_memory_by_pid=lambda: gpu_memory_by_pid(gateway=gateway))
    [sample] = collector.sample(0)
    # sshd (200) holds memory on GPU 0 but is outside the tree
    assert sample.gpu_memory_used_bytes_by_index == {0: 3 * GIB, 1: GIB}


def test_process_gpu_utilization_through_the_nvml_gateway_on_a_recorded_a100(tmp_path, caplog):
    """SM utilisation of the tree's processes per GPU, over NVML's samples since the previous sample."""
    from comet_agent.sources.nvml import NvmlGateway, gpu_utilization_reader
    from tests.support.fake_nvml import build_fake_nvml, load_recording

    recording = load_recording("a100-sxm4-80gb")
    t = 1_764_240_000_000_000
    recording["devices"][0]["process_utilization"] = [
        {"pid": 100, "time_stamp_us": t, "sm_util": 60, "mem_util": 30},
        {"pid": 100, "time_stamp_us": t + 166_667, "sm_util": 80, "mem_util": 40},
        {"pid": 200, "time_stamp_us": t + 2, "sm_util": 99, "mem_util": 50},  # sshd: outside the tree
    ]
    recording["devices"][1]["process_utilization"] = [{"pid": 101, "time_stamp_us": t, "sm_util": 25, "mem_util": 9}]
    gateway = NvmlGateway(module=build_fake_nvml(recording), environ={})
    _, _, collector = build(tmp_path, gpu_utilization_by_pid=gpu_utilization_reader(gateway=gateway))
    with caplog.at_level(logging.DEBUG, logger="comet_agent.sources.nvml"):
        [first] = collector.sample(0)
        [second] = collector.sample(1)  # NVML has no newer sample: NOT_FOUND, which is no failure
    assert first.gpu_utilization_percent_by_index == {0: 70.0, 1: 25.0}
    assert second.gpu_utilization_percent_by_index == {}
    assert "process_utilization" not in caplog.text


def test_two_readers_do_not_take_each_others_samples():
    """The daemon's jobs each read the shared gateway; one job's reading leaves the other's window whole."""
    from comet_agent.sources.nvml import NvmlGateway, gpu_utilization_reader
    from tests.support.fake_nvml import build_fake_nvml

    gateway = NvmlGateway(module=build_fake_nvml("rtx-a6000"), environ={})
    first, second = gpu_utilization_reader(gateway=gateway), gpu_utilization_reader(gateway=gateway)
    assert first() == second() == {7300: {0: 90.0}}
    assert first() == {} and second() == {}
