"""GpuCollector on recorded GPU models: one GpuSample per visible device, None where NVML cannot answer."""

from __future__ import annotations

import dataclasses
import logging
import sys

import pytest

from comet_agent.collectors import PeriodicCollector, Unavailable
from comet_agent.collectors.gpu import GpuCollector
from comet_agent.records import GpuSample
from comet_agent.sources.nvml import NvmlGateway
from tests.support.fake_nvml import MODELS, build_fake_nvml, load_recording

MiB = 1024 * 1024
NOW_MS = 1_764_240_000_000
OPTIONAL_FIELDS = (
    "utilization_percent",
    "memory_utilization_percent",
    "temperature_celsius",
    "power_usage_milliwatts",
    "power_limit_milliwatts",
    "clock_sm_mhz",
    "clock_memory_mhz",
    "fan_speed_percent",
    "throttle_reasons",
    "ecc_errors_corrected",
    "ecc_errors_uncorrected",
    "pcie_tx_bytes_per_s",
    "pcie_rx_bytes_per_s",
    "nvlink_tx_bytes",
    "nvlink_rx_bytes",
    "nvlink_crc_flit_errors",
    "nvlink_crc_data_errors",
    "nvlink_replay_errors",
    "nvlink_recovery_errors",
    "retired_pages_sbe",
    "retired_pages_dbe",
    "retired_pages_pending",
    "remapped_rows_correctable",
    "remapped_rows_uncorrectable",
    "row_remap_failure",
)


def _collector(recording, **environ) -> GpuCollector:
    return GpuCollector(nvml_module=build_fake_nvml(recording), environ=environ)


def test_gpu_collector_follows_the_periodic_protocol():
    collector = _collector("a100-sxm4-80gb")
    assert isinstance(collector, PeriodicCollector)
    assert (collector.name, collector.cadence) == ("gpu", "gpu")


@pytest.mark.parametrize("model", MODELS)
def test_one_sample_per_visible_device_in_order(model):
    recording = load_recording(model)
    samples = _collector(model).sample(NOW_MS)
    assert [sample.gpu_index for sample in samples] == list(range(len(recording["devices"])))
    assert [sample.uuid for sample in samples] == [device["uuid"] for device in recording["devices"]]
    assert all(isinstance(sample, GpuSample) and sample.taken_at_ms == NOW_MS for sample in samples)
    for sample in samples:  # memory always answers, and adds up
        assert sample.memory_total_bytes >= sample.memory_used_bytes + sample.memory_free_bytes


def test_a100_sample_carries_the_recorded_values():
    sample = _collector("a100-sxm4-80gb").sample(NOW_MS)[2]
    assert dataclasses.asdict(sample) == {
        "gpu_index": 2,
        "taken_at_ms": NOW_MS,
        "uuid": "GPU-7c0f9e21-55aa-4b3c-9d8e-0a1b2c3d4e5f",
        "utilization_percent": 0.0,
        "memory_used_bytes": 0,
        "memory_free_bytes": (81920 - 536) * MiB,
        "memory_total_bytes": 81920 * MiB,
        "memory_utilization_percent": 0.0,
        "temperature_celsius": 34.0,
        "power_usage_milliwatts": 62000,
        "power_limit_milliwatts": 400000,
        "clock_sm_mhz": 210,
        "clock_memory_mhz": 1593,
        "fan_speed_percent": None,  # SXM boards have no fan of their own
        "throttle_reasons": 1,  # GPU idle
        "ecc_errors_corrected": 2,
        "ecc_errors_uncorrected": 0,
        "pcie_tx_bytes_per_s": 990 * 1024,  # NVML reports KB/s
        "pcie_rx_bytes_per_s": 95121 * 1024,
        "nvlink_tx_bytes": 8729001984 * 1024,  # NVML counts KiB, summed over the 12 links
        "nvlink_rx_bytes": 8733995008 * 1024,
        "nvlink_crc_flit_errors": 0,
        "nvlink_crc_data_errors": 0,
        "nvlink_replay_errors": 3,
        "nvlink_recovery_errors": 0,
        "retired_pages_sbe": None,  # Ampere remaps rows instead of retiring pages
        "retired_pages_dbe": None,
        "retired_pages_pending": None,
        "remapped_rows_correctable": 0,
        "remapped_rows_uncorrectable": 0,
        "row_remap_failure": 0,
        "name": "NVIDIA A100-SXM4-80GB",
        "nvml_index": 2,
        "pci_bus_id": "00000000:47:00.0",
        "driver_version": "535.154.05",
    }


def test_t4_retires_pages_and_has_neither_nvlink_nor_row_remapping():
    normal, _ = _collector("t4-not-supported").sample(NOW_MS)
    assert (normal.retired_pages_sbe, normal.retired_pages_dbe, normal.retired_pages_pending) == (1, 0, 0)
    assert (normal.pcie_tx_bytes_per_s, normal.pcie_rx_bytes_per_s) == (512 * 1024, 20480 * 1024)
    assert normal.nvlink_tx_bytes is None and normal.nvlink_crc_flit_errors is None
    assert normal.remapped_rows_correctable is None and normal.row_remap_failure is None


def test_mig_instances_answer_no_interconnect_or_memory_health_fields():
    recording = load_recording("h100-80gb-mig")
    mig_uuid = recording["devices"][0]["mig_devices"][0]["uuid"]
    (instance,) = _collector(recording, CUDA_VISIBLE_DEVICES=mig_uuid).sample(NOW_MS)
    assert instance.uuid == mig_uuid and instance.nvml_index == 0
    assert instance.pcie_tx_bytes_per_s is None and instance.nvlink_tx_bytes is None
    assert instance.remapped_rows_correctable is None and instance.retired_pages_sbe is None


def test_a_pending_page_retirement_and_a_failed_row_remap_read_as_one():
    recording = load_recording("t4-not-supported")
    recording["devices"][0]["retired_pages"]["pending"] = 1
    assert _collector(recording).sample(NOW_MS)[0].retired_pages_pending == 1
    recording = load_recording("a100-sxm4-80gb")
    recording["devices"][0]["remapped_rows"] = [0, 1, 0, 1]
    sample = _collector(recording).sample(NOW_MS)[0]
    assert (sample.remapped_rows_uncorrectable, sample.row_remap_failure) == (1, 1)


def test_a_board_without_nvlink_is_asked_for_its_fields_once():
    fake = build_fake_nvml("rtx-a6000")
    collector = GpuCollector(nvml_module=fake, environ={})
    for tick in range(3):
        assert collector.sample(NOW_MS + tick)[0].nvlink_rx_bytes is None
    assert fake.calls["nvmlDeviceGetFieldValues"] == 1


def test_device_whose_every_optional_field_is_unsupported_still_reports_memory():
    normal, restricted = _collector("t4-not-supported").sample(NOW_MS)
    assert all(getattr(restricted, field) is None for field in OPTIONAL_FIELDS)
    assert restricted.memory_total_bytes == 15360 * MiB
    assert restricted.memory_used_bytes == (1000 + 255) * MiB  # v1 API: no v2 on this driver
    # The neighbouring device is unaffected: only its fan and ECC fields are missing.
    assert (normal.utilization_percent, normal.temperature_celsius, normal.power_usage_milliwatts) == (
        72.0,
        66.0,
        52310,
    )
    assert (normal.fan_speed_percent, normal.ecc_errors_corrected, normal.ecc_errors_uncorrected) == (None, None, None)


def test_unsupported_fields_are_asked_once_not_every_tick(caplog):
    caplog.set_level(logging.DEBUG, logger="comet_agent.sources.nvml")
    fake = build_fake_nvml("t4-not-supported")
    collector = GpuCollector(nvml_module=fake, environ={})
    first = collector.sample(NOW_MS)
    calls_after_first = sum(fake.calls.values())
    second = collector.sample(NOW_MS + 1000)
    calls_on_second = sum(fake.calls.values()) - calls_after_first
    assert [dataclasses.replace(s, taken_at_ms=0) for s in first] == [
        dataclasses.replace(s, taken_at_ms=0) for s in second
    ]
    assert fake.calls["nvmlDeviceGetFanSpeed"] == 2  # once per device, on the first tick only
    # Board 0: memory, utilization, temperature, power, power limit, two clocks, clocks-event
    # reasons, PCIe tx and rx, and its retired pages (two causes and the pending flag); its fan,
    # ECC, NVLink and row remapping are no longer asked. Board 1: only its memory (v1 API).
    assert calls_on_second == 8 + 2 + 3 + 1
    assert caplog.text.count("fan_speed_percent not available") == 2


def test_unexpected_error_degrades_one_field_of_one_device_and_logs_once(caplog):
    caplog.set_level(logging.INFO, logger="comet_agent.sources.nvml")
    recording = load_recording("a100-sxm4-80gb")
    recording["devices"][1]["power_usage_mw"] = {"nvml_error": "Unknown"}
    recording["devices"][1]["clocks_event_reasons"] = {"nvml_error": "GpuIsLost"}
    collector = _collector(recording)
    for tick in range(3):
        samples = collector.sample(NOW_MS + tick)
        assert samples[1].power_usage_milliwatts is None
        assert samples[1].throttle_reasons is None
        assert samples[1].temperature_celsius == 58.0
        assert samples[0].power_usage_milliwatts == 342000
    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.INFO]
    assert sum("power_usage_milliwatts failed" in message for message in messages) == 1
    assert sum("clocks_event_reasons failed" in message for message in messages) == 1


def test_throttle_reasons_fall_back_to_the_older_function_name():
    fake = build_fake_nvml("a100-sxm4-80gb")
    del fake.nvmlDeviceGetCurrentClocksEventReasons  # bindings older than the rename
    samples = GpuCollector(nvml_module=fake, environ={}).sample(NOW_MS)
    assert [sample.throttle_reasons for sample in samples] == [0, 0, 1, 4]
    assert fake.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] == 4


def test_board_in_mig_mode_reports_memory_but_no_utilization():
    board, plain = _collector("h100-80gb-mig").sample(NOW_MS)
    assert board.utilization_percent is None and board.memory_utilization_percent is None
    assert board.memory_used_bytes == 45000 * MiB
    assert (board.temperature_celsius, board.power_usage_milliwatts) == (47.0, 245000)
    assert plain.utilization_percent == 88.0


def test_mig_instances_selected_by_uuid_are_sampled_as_devices():
    mig_3g, mig_1g = "MIG-1f2e3d4c-5b6a-5978-8a9b-0c1d2e3f4a5b", "MIG-6a7b8c9d-0e1f-5a2b-9c3d-4e5f6a7b8c9d"
    samples = _collector("h100-80gb-mig", CUDA_VISIBLE_DEVICES=f"{mig_3g},{mig_1g}").sample(NOW_MS)
    assert [(s.gpu_index, s.uuid) for s in samples] == [(0, mig_3g), (1, mig_1g)]
    assert [(s.memory_total_bytes, s.memory_used_bytes) for s in samples] == [
        (40320 * MiB, 30000 * MiB),
        (9856 * MiB, 5000 * MiB),
    ]
    assert all(getattr(s, field) is None for s in samples for field in OPTIONAL_FIELDS)


@pytest.mark.parametrize(
    ("cuda_visible_devices", "expected_uuids"),
    [
        ("2,0", ["GPU-7c0f9e21-55aa-4b3c-9d8e-0a1b2c3d4e5f", "GPU-3b5e2a47-9c1d-4f0e-8a6b-1c2d3e4f5a60"]),
        ("GPU-e1d2c3b4-a596-4787-9868-7a6b5c4d3e2f", ["GPU-e1d2c3b4-a596-4787-9868-7a6b5c4d3e2f"]),
        ("GPU-7c0f,1", ["GPU-7c0f9e21-55aa-4b3c-9d8e-0a1b2c3d4e5f", "GPU-3b5e2a47-9c1d-4f0e-8a6b-1c2d3e4f5a61"]),
        ("1,9,0", ["GPU-3b5e2a47-9c1d-4f0e-8a6b-1c2d3e4f5a61"]),  # stops at the invalid 9
    ],
)
def test_cuda_visible_devices_selects_and_renumbers(cuda_visible_devices, expected_uuids):
    samples = _collector("a100-sxm4-80gb", CUDA_VISIBLE_DEVICES=cuda_visible_devices).sample(NOW_MS)
    assert [sample.uuid for sample in samples] == expected_uuids
    assert [sample.gpu_index for sample in samples] == list(range(len(expected_uuids)))


@pytest.mark.parametrize("cuda_visible_devices", ["", "-1", "NoDevFiles", "GPU-ffffffff"])
def test_cuda_visible_devices_hiding_every_gpu_is_unavailable(cuda_visible_devices):
    with pytest.raises(Unavailable, match="CUDA_VISIBLE_DEVICES"):
        _collector("a100-sxm4-80gb", CUDA_VISIBLE_DEVICES=cuda_visible_devices)


@pytest.mark.parametrize(
    ("init_error", "expected_words"),
    [("LibraryNotFound", "libnvidia-ml.so.1"), ("DriverNotLoaded", "kernel driver is not loaded")],
)
def test_unavailable_when_nvml_cannot_start(init_error, expected_words):
    recording = load_recording("a100-sxm4-80gb")
    recording["init_error"] = init_error
    with pytest.raises(Unavailable) as raised:
        _collector(recording)
    assert expected_words in raised.value.reason


def test_unavailable_with_no_device():
    recording = load_recording("t4-not-supported")
    recording["devices"] = []
    with pytest.raises(Unavailable, match="no GPU"):
        _collector(recording)


def test_unavailable_without_pynvml(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    (tmp_path / "nvidiactl").write_text("")  # a driver shows itself, so the bindings are needed
    with pytest.raises(Unavailable, match="nvidia-ml-py"):
        GpuCollector(environ={}, gateway=NvmlGateway(environ={}, driver_paths=[str(tmp_path / "nvidiactl")]))


def test_unavailable_under_void_container_names_the_variable():
    recording = load_recording("a100-sxm4-80gb")
    recording["init_error"] = "LibraryNotFound"
    with pytest.raises(Unavailable, match="NVIDIA_VISIBLE_DEVICES='void'"):
        _collector(recording, NVIDIA_VISIBLE_DEVICES="void")


def test_failed_construction_releases_nvml():
    fake = build_fake_nvml("a100-sxm4-80gb")
    with pytest.raises(Unavailable):
        GpuCollector(nvml_module=fake, environ={"CUDA_VISIBLE_DEVICES": "-1"})
    assert fake.calls["nvmlInit"] == fake.calls["nvmlShutdown"] == 1


def test_close_shuts_nvml_down_once():
    fake = build_fake_nvml("a100-sxm4-80gb")
    collector = GpuCollector(nvml_module=fake, environ={})
    collector.sample(NOW_MS)
    collector.close()
    collector.close()
    assert fake.calls["nvmlInit"] == fake.calls["nvmlShutdown"] == 1


def test_board_this_process_may_not_open_is_left_out_and_the_rest_renumbered(caplog):
    caplog.set_level(logging.INFO, logger="comet_agent.sources.nvml")
    recording = load_recording("a100-sxm4-80gb")
    recording["devices"][1]["handle_error"] = "NoPermission"  # outside this job's device cgroup
    samples = _collector(recording).sample(NOW_MS)
    assert [(s.gpu_index, s.uuid) for s in samples] == [
        (0, "GPU-3b5e2a47-9c1d-4f0e-8a6b-1c2d3e4f5a60"),
        (1, "GPU-7c0f9e21-55aa-4b3c-9d8e-0a1b2c3d4e5f"),
        (2, "GPU-e1d2c3b4-a596-4787-9868-7a6b5c4d3e2f"),
    ]
    assert "nvml-index-1: handle not available" in caplog.text
