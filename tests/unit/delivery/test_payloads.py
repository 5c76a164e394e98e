"""Periodic records -> Comet metric points and log_*_metrics arguments."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Optional

import pytest

from comet_agent.collectors.gpu import GpuCollector
from comet_agent.delivery import payloads
from comet_agent.records import (
    AgentSelfSample,
    CpuSample,
    DiskIoSample,
    DiskUsageSample,
    GpuSample,
    LoadSample,
    MemorySample,
    NetworkSample,
    ProcessTreeSample,
)
from tests.support.fake_nvml import MODELS, build_fake_nvml

T = 1_764_230_000_000


def points_by_name(records):
    return {point["metricName"]: point["metricValue"] for point in payloads.metric_points(records)}


def cpu_sample(**overrides):
    values = dict(
        per_cpu_percent=(10.0, 90.0, 50.0),
        cpu_numbers=(0, 1, 11),
        overall_percent=50.0,
        overall_source="host",
        host_overall_percent=50.0,
        cgroup_quota_cpus=None,
        taken_at_ms=T,
    )
    values.update(overrides)
    return CpuSample(**values)


def test_cpu_points_use_comets_one_based_two_digit_names():
    assert points_by_name([cpu_sample()]) == {
        "sys.cpu.percent.avg": 50.0,
        "sys.compute.overall": 50.0,  # the name Comet's compute panels read
        "sys.cpu.percent.01": 10.0,
        "sys.cpu.percent.02": 90.0,
        "sys.cpu.percent.12": 50.0,
    }


def test_cpu_under_a_cgroup_quota_reports_the_quota_relative_figure_apart():
    names = points_by_name(
        [cpu_sample(overall_source="cgroup", overall_percent=75.0, host_overall_percent=20.0, cgroup_quota_cpus=2.0)]
    )
    # The Comet name stays host-wide (what the server derives from log_cpu_metrics' per-CPU list).
    assert names["sys.cpu.percent.avg"] == 20.0
    assert names["sys.cpu.cgroup.percent.avg"] == 75.0
    assert "sys.cpu.host.percent.avg" not in names


def test_cpu_metric_name_beyond_99_cpus():
    assert payloads.cpu_metric_name(0) == "sys.cpu.percent.01"
    assert payloads.cpu_metric_name(127) == "sys.cpu.percent.128"


def test_every_point_has_the_three_keys_and_the_record_timestamp():
    for point in payloads.metric_points([cpu_sample(), LoadSample(1.0, 2.0, 3.0, taken_at_ms=T + 5)]):
        assert set(point) == {"metricName", "metricValue", "timestamp"}
    assert payloads.metric_points([LoadSample(1.0, 2.0, 3.0, taken_at_ms=T + 5)])[0]["timestamp"] == T + 5


def test_memory_points_and_swap_only_when_present():
    without_swap = MemorySample(1000, 400, 600, 60.0, 0, 0, None, T)
    assert points_by_name([without_swap]) == {
        "sys.ram.total": 1000,
        "sys.ram.used": 600,
        "sys.ram.available": 400,
        "sys.ram.percent.used": 60.0,
    }
    with_swap = MemorySample(1000, 400, 600, 60.0, 200, 50, 25.0, T)
    assert {name: value for name, value in points_by_name([with_swap]).items() if "swap" in name} == {
        "sys.swap.total": 200,
        "sys.swap.used": 50,
        "sys.swap.percent.used": 25.0,
    }


def test_load_points():
    assert points_by_name([LoadSample(0.5, 0.25, 0.125, T)]) == {
        "sys.load.avg": 0.5,
        "sys.load.avg5": 0.25,
        "sys.load.avg15": 0.125,
    }


def test_disk_and_network_points_are_integer_bytes_per_second_like_comet():
    names = points_by_name(
        [
            DiskIoSample(read_bytes_per_s=1000.4, write_bytes_per_s=2000.6, taken_at_ms=T),
            DiskUsageSample("root", "/", 100, 40, 50, 44.4, T),
            DiskUsageSample("job", "/data/run", 200, 20, 180, 10.0, T),
            NetworkSample(sent_bytes_per_s=10.5, received_bytes_per_s=20.2, taken_at_ms=T),
        ]
    )
    assert names == {
        "sys.disk.read_bps": 1000,
        "sys.disk.write_bps": 2001,
        "sys.disk.root.used": 40,
        "sys.disk.root.percent.used": 44.4,
        "sys.disk.job.used": 20,
        "sys.disk.job.percent.used": 10.0,
        "sys.network.send_bps": 10,
        "sys.network.receive_bps": 20,
    }
    assert all(isinstance(names[name], int) for name in ("sys.disk.read_bps", "sys.network.send_bps"))


def test_process_and_agent_points_leave_out_unknown_values():
    names = points_by_name(
        [
            ProcessTreeSample(
                100, 3, None, 4096, 7, None, taken_at_ms=T, gpu_memory_used_bytes_by_index={0: 123, 2: 456}
            ),
            AgentSelfSample(pid=9, cpu_percent=None, rss_bytes=2048, taken_at_ms=T),
        ]
    )
    assert names == {
        "sys.proc.rss": 4096,
        "sys.proc.threads": 7,
        "sys.proc.count": 3,
        "sys.proc.gpu.0.used_memory": 123,
        "sys.proc.gpu.2.used_memory": 456,
        "sys.agent.rss": 2048,
    }
    names = points_by_name([ProcessTreeSample(100, 1, 150.0, 1, 1, 9, taken_at_ms=T), AgentSelfSample(9, 0.5, 1, T)])
    assert (names["sys.proc.cpu.percent"], names["sys.proc.open_files"], names["sys.agent.cpu.percent"]) == (
        150.0,
        9,
        0.5,
    )


def test_gpu_points_use_comets_names_and_skip_unsupported_fields():
    sample = GpuSample(
        gpu_index=1,
        taken_at_ms=T,
        uuid="GPU-1",
        utilization_percent=87.0,
        memory_used_bytes=30 * 2**30,
        memory_free_bytes=50 * 2**30,
        memory_total_bytes=80 * 2**30,
        memory_utilization_percent=40.0,
        temperature_celsius=61.0,
        power_usage_milliwatts=312_000,
        power_limit_milliwatts=400_000,
        clock_sm_mhz=1410,
        clock_memory_mhz=1593,
        throttle_reasons=0,
        ecc_errors_corrected=0,
        ecc_errors_uncorrected=0,
    )
    names = points_by_name([sample])
    assert names["sys.gpu.1.gpu_utilization"] == 87.0
    assert names["sys.gpu.1.used_memory"] == 30 * 2**30
    assert names["sys.gpu.1.free_memory"] == 50 * 2**30
    assert names["sys.gpu.1.total_memory"] == 80 * 2**30
    assert names["sys.gpu.1.percent.used_memory"] == pytest.approx(37.5)
    assert names["sys.gpu.1.power_usage"] == 312_000
    assert names["sys.gpu.1.clock_mem"] == 1593
    assert names["sys.gpu.1.throttle_reasons"] == 0  # a real 0: not throttled
    assert "sys.gpu.1.fan_speed" not in names  # None: datacenter GPU without a fan reading


def test_log_metrics_keyword_arguments_match_apiexperiment_signatures():
    """The cpu/ram/load payloads of push_requests bind to comet_ml's own APIExperiment signatures."""
    comet_ml = pytest.importorskip("comet_ml")
    records = [
        cpu_sample(cpu_numbers=(0, 1, 2)),
        MemorySample(1000, 400, 600, 60.0, 0, 0, None, T),
        LoadSample(0.5, 0.25, 0.125, T),
    ]
    requests = dict(payloads.push_requests(payloads.metric_points(records), per_kind_endpoints=True))
    for endpoint, method in (
        ("cpu_metrics", comet_ml.APIExperiment.log_cpu_metrics),
        ("ram_metrics", comet_ml.APIExperiment.log_ram_metrics),
        ("load_metrics", comet_ml.APIExperiment.log_load_metrics),
    ):
        inspect.signature(method).bind(None, **requests[endpoint])  # raises TypeError on a wrong keyword
    assert requests["cpu_metrics"] == {"cpu_metrics": [10.0, 90.0, 50.0], "timestamp": T}
    assert requests["ram_metrics"] == {"total_ram": 1000, "used_ram": 600, "timestamp": T}
    assert requests["load_metrics"] == {"load_avg": 0.5, "timestamp": T}


def test_system_metric_names_sorted_and_distinct():
    records = [LoadSample(1.0, 1.0, 1.0, T), LoadSample(2.0, 2.0, 2.0, T + 1), NetworkSample(1.0, 2.0, T)]
    assert payloads.system_metric_names(records) == [
        "sys.load.avg",
        "sys.load.avg15",
        "sys.load.avg5",
        "sys.network.receive_bps",
        "sys.network.send_bps",
    ]


@dataclass(frozen=True)
class _FanSample:
    """A record defined outside records.py that names its own metrics (records.MetricRecord)."""

    speed_percent: Optional[float]
    board_watts: Optional[float]
    taken_at_ms: int

    def metric_pairs(self):
        return [("sys.fan.percent", self.speed_percent), ("sys.fan.board_watts", self.board_watts)]


def test_a_record_that_names_its_own_metrics_needs_no_mapping_here():
    points = payloads.metric_points([_FanSample(40.0, None, taken_at_ms=T), LoadSample(0.5, 0.25, 0.125, T + 1)])
    # in order, None left out, stamped with the record's own taken_at_ms
    assert points[0] == {"metricName": "sys.fan.percent", "metricValue": 40.0, "timestamp": T}
    assert [point["metricName"] for point in points] == [
        "sys.fan.percent",
        "sys.load.avg",
        "sys.load.avg5",
        "sys.load.avg15",
    ]
    assert payloads.system_metric_names([_FanSample(1.0, 2.0, T)]) == ["sys.fan.board_watts", "sys.fan.percent"]


def test_metric_points_rejects_records_without_a_mapping():
    with pytest.raises(TypeError, match="no Comet metric mapping for str"):
        payloads.metric_points(["not a record"])


@pytest.mark.parametrize("model", MODELS)
def test_gpu_collector_samples_map_to_points_and_log_gpu_metrics_items(model):
    collector = GpuCollector(nvml_module=build_fake_nvml(model), environ={})
    try:
        samples = collector.sample(T)
    finally:
        collector.close()
    assert samples
    names = points_by_name(samples)
    for sample in samples:
        prefix = f"sys.gpu.{sample.gpu_index}."
        assert (prefix + "used_memory" in names) == (sample.memory_used_bytes is not None)
        assert (prefix + "fan_speed" in names) == (sample.fan_speed_percent is not None)
    assert all(value is not None for value in names.values())
    requests = dict(payloads.push_requests(payloads.metric_points(samples), per_kind_endpoints=True))
    items = requests["gpu_metrics"]["gpus"]
    # Comet's five keys (plus our per-item sample time), whole numbers; only GPUs that know all four figures.
    assert all(
        set(item) == {"gpuId", "freeMemory", "usedMemory", "gpuUtilization", "totalMemory", "timestamp"}
        for item in items
    )
    assert all(isinstance(value, int) for item in items for value in item.values())
    assert [item["gpuId"] for item in items] == [s.gpu_index for s in samples if s.utilization_percent is not None]
