"""The GPU collectors against the real NVML on a machine with NVIDIA GPUs.

Run on the accelerator machine; everywhere else every test here skips with the reason NVML gave.
Only shapes and sane ranges are asserted: the values belong to the live device.
"""

from __future__ import annotations

import pytest

from comet_agent.collectors.gpu import GpuCollector
from comet_agent.collectors.gpu_static import GpuStaticCollector, gpu_static_info_payload
from comet_agent.sources.nvml import NvmlGateway, NvmlUnavailable, gpu_memory_by_pid

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def real_uuids() -> list[str]:
    """UUIDs of every board on this host; skips the module, with NVML's reason, when there is none."""
    gateway = NvmlGateway(environ={})
    try:
        gpus = gateway.visible_gpus()
    except NvmlUnavailable as error:
        pytest.skip(f"no usable NVIDIA GPU here: {error.reason}")
    uuids = [gpu.uuid for gpu in gpus]
    gateway.close()
    return uuids


def test_static_snapshot_shapes(real_uuids):
    snapshot = GpuStaticCollector(environ={}).collect()
    assert [device.uuid for device in snapshot.devices] == real_uuids
    assert snapshot.driver_version and snapshot.cuda_driver_version
    for item in gpu_static_info_payload(snapshot):
        assert set(item) == {"gpuIndex", "name", "uuid", "totalMemory", "powerLimit"}
        assert item["name"] and item["uuid"].startswith(("GPU-", "MIG-"))
        assert (1 << 30) <= item["totalMemory"] <= (1 << 40)  # 1 GiB .. 1 TiB
        assert item["powerLimit"] is None or 10_000 <= item["powerLimit"] <= 2_000_000  # 10 W .. 2 kW


def test_periodic_samples_in_sane_ranges(real_uuids):
    collector = GpuCollector(environ={})
    try:
        first = collector.sample(1)
        second = collector.sample(2)
    finally:
        collector.close()
    assert [sample.uuid for sample in second] == real_uuids
    assert [sample.gpu_index for sample in first] == list(range(len(real_uuids)))
    for sample in second:
        assert sample.memory_total_bytes >= sample.memory_used_bytes >= 0
        assert sample.memory_free_bytes >= 0
        for percent in (sample.utilization_percent, sample.memory_utilization_percent, sample.fan_speed_percent):
            assert percent is None or 0 <= percent <= 100
        assert sample.temperature_celsius is None or 0 < sample.temperature_celsius < 120
        assert sample.power_usage_milliwatts is None or 0 <= sample.power_usage_milliwatts <= 2_000_000
        assert sample.clock_sm_mhz is None or 0 <= sample.clock_sm_mhz <= 5_000
        assert sample.throttle_reasons is None or sample.throttle_reasons >= 0
        assert sample.ecc_errors_uncorrected is None or sample.ecc_errors_uncorrected >= 0


@pytest.mark.parametrize("by", ["index", "uuid"])
def test_cuda_visible_devices_filters_the_real_devices(real_uuids, by):
    last = len(real_uuids) - 1
    value = str(last) if by == "index" else real_uuids[last]
    collector = GpuCollector(environ={"CUDA_VISIBLE_DEVICES": value})
    try:
        samples = collector.sample(1)
    finally:
        collector.close()
    assert [(sample.gpu_index, sample.uuid) for sample in samples] == [(0, real_uuids[last])]


def test_gpu_memory_by_pid_shape(real_uuids):
    gateway = NvmlGateway(environ={})
    try:
        by_pid = gpu_memory_by_pid(gateway=gateway)
    finally:
        gateway.close()
    for pid, by_index in by_pid.items():
        assert pid > 0
        assert all(0 <= index < len(real_uuids) and used_bytes >= 0 for index, used_bytes in by_index.items())


def test_interconnect_and_memory_health_fields_in_sane_ranges(real_uuids):
    """PCIe, NVLink, retired pages and remapped rows: a number where the board has the feature, else None."""
    collector = GpuCollector(environ={})
    try:
        collector.sample(1)
        samples = collector.sample(2)
    finally:
        collector.close()
    for sample in samples:
        assert sample.name and sample.nvml_index is not None
        assert sample.pci_bus_id is None or len(sample.pci_bus_id.split(":")) == 3
        for rate in (sample.pcie_tx_bytes_per_s, sample.pcie_rx_bytes_per_s):
            assert rate is None or 0 <= rate <= 256 * 2**30  # below PCIe 6 x16
        nvlink = (
            sample.nvlink_tx_bytes,
            sample.nvlink_rx_bytes,
            sample.nvlink_crc_flit_errors,
            sample.nvlink_crc_data_errors,
            sample.nvlink_replay_errors,
            sample.nvlink_recovery_errors,
        )
        assert all(value is None or value >= 0 for value in nvlink)
        if "H100" in sample.name or "H200" in sample.name or "A100-SXM" in sample.name:
            assert sample.nvlink_tx_bytes is not None, "SXM boards have NVLink"
        health = (
            sample.retired_pages_sbe,
            sample.retired_pages_dbe,
            sample.remapped_rows_correctable,
            sample.remapped_rows_uncorrectable,
        )
        assert all(value is None or value >= 0 for value in health)
        assert sample.retired_pages_pending in (None, 0, 1) and sample.row_remap_failure in (None, 0, 1)
        if any(family in sample.name for family in ("A100", "H100", "H200", "A30")):
            assert sample.remapped_rows_correctable is not None, "Ampere and later remap rows"


def test_process_utilization_reader_shape(real_uuids):
    from comet_agent.sources.nvml import gpu_utilization_reader

    gateway = NvmlGateway(environ={})
    try:
        read = gpu_utilization_reader(gateway=gateway)
        first, second = read(), read()
    finally:
        gateway.close()
    for by_pid in (first, second):
        for pid, by_index in by_pid.items():
            assert pid > 0
            assert all(0 <= index < len(real_uuids) and 0 <= percent <= 100 for index, percent in by_index.items())


def test_prometheus_page_of_the_real_gpus_parses_with_dcgm_names(real_uuids):
    import types
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from comet_agent.engine.prometheus import PrometheusExporter

    collector = GpuCollector(environ={})
    try:
        job = types.SimpleNamespace(experiment_key="k" * 32, latest_records={"gpu": collector.sample(1)})
    finally:
        collector.close()
    exporter = PrometheusExporter("127.0.0.1", 0, jobs=lambda: [job]).start()
    try:
        with urllib.request.urlopen(exporter.url, timeout=5) as response:
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    finally:
        exporter.stop()
    used = families["DCGM_FI_DEV_FB_USED"].samples
    assert sorted(s.labels["UUID"] for s in used) == sorted(real_uuids)
    assert all(0 <= s.value <= 2**20 for s in used)  # MiB: at most 1 TiB
