"""GpuStaticCollector and its Comet mapping on recorded GPU models."""

from __future__ import annotations

import pytest

from comet_agent.collectors import StaticCollector, Unavailable
from comet_agent.collectors.gpu_static import GpuStaticCollector, gpu_static_info_payload
from tests.support.fake_nvml import MODELS, build_fake_nvml, load_recording

MiB = 1024 * 1024
H100_BOARD_0 = "GPU-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
MIG_3G = "MIG-1f2e3d4c-5b6a-5978-8a9b-0c1d2e3f4a5b"
MIG_1G = "MIG-6a7b8c9d-0e1f-5a2b-9c3d-4e5f6a7b8c9d"


def _collect(recording, **environ):
    return GpuStaticCollector(nvml_module=build_fake_nvml(recording), environ=environ).collect()


def _additional(snapshot) -> dict:
    return {item["key"]: item["value"] for item in snapshot.additional}


def test_gpu_static_collector_follows_the_static_protocol():
    assert isinstance(GpuStaticCollector(nvml_module=build_fake_nvml("a100-sxm4-80gb")), StaticCollector)
    assert GpuStaticCollector.name == "gpu_static"


def test_a100_payload_is_comets_gpu_static_info_list():
    payload = gpu_static_info_payload(_collect("a100-sxm4-80gb"))
    assert payload[0] == {
        "gpuIndex": 0,
        "name": "NVIDIA A100-SXM4-80GB",
        "uuid": "GPU-3b5e2a47-9c1d-4f0e-8a6b-1c2d3e4f5a60",
        "totalMemory": 81920 * MiB,
        "powerLimit": 400000,
    }
    assert [item["gpuIndex"] for item in payload] == [0, 1, 2, 3]
    assert payload[3]["powerLimit"] == 275000  # a board capped below its default limit


@pytest.mark.parametrize("model", MODELS)
def test_every_model_reports_driver_cuda_and_pci(model):
    recording = load_recording(model)
    snapshot = _collect(model)
    additional = _additional(snapshot)
    assert snapshot.driver_version == additional["gpu.driverVersion"] == recording["driver_version"]
    major, minor = divmod(recording["cuda_driver_version"], 1000)
    assert snapshot.cuda_driver_version == additional["gpu.cudaDriverVersion"] == f"{major}.{minor // 10}"
    for index, device in enumerate(recording["devices"]):
        assert additional[f"gpu.{index}.pciBusId"] == device["pci_bus_id"]
        assert additional[f"gpu.{index}.nvmlIndex"] == index
    assert all(item["value"] is not None for item in snapshot.additional)


def test_mig_mode_and_instances_are_reported_for_the_board():
    snapshot = _collect("h100-80gb-mig")
    board, plain = snapshot.devices
    assert (board.mig_mode_enabled, board.mig_instance_uuids) == (True, (MIG_3G, MIG_1G))
    assert (plain.mig_mode_enabled, plain.mig_instance_uuids) == (False, ())
    additional = _additional(snapshot)
    assert additional["gpu.0.migMode"] == "enabled"
    assert additional["gpu.0.migInstances"] == f"{MIG_3G},{MIG_1G}"
    assert additional["gpu.1.migMode"] == "disabled"
    assert "gpu.1.migInstances" not in additional


def test_mig_instance_selected_by_uuid_reports_its_own_memory_and_its_board():
    snapshot = _collect("h100-80gb-mig", CUDA_VISIBLE_DEVICES=MIG_1G)
    (device,) = snapshot.devices
    assert (device.gpu_index, device.uuid, device.is_mig_instance, device.parent_uuid) == (
        0,
        MIG_1G,
        True,
        H100_BOARD_0,
    )
    assert device.name == "NVIDIA H100 80GB HBM3 MIG 1g.10gb"
    assert device.memory_total_bytes == 9856 * MiB
    assert device.power_limit_milliwatts is None  # a board-level setting NVML does not give per instance
    assert device.pci_bus_id == "00000000:19:00.0"  # from the parent board
    assert _additional(snapshot)["gpu.0.migParentUuid"] == H100_BOARD_0
    assert gpu_static_info_payload(snapshot) == [
        {
            "gpuIndex": 0,
            "name": "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
            "uuid": MIG_1G,
            "totalMemory": 9856 * MiB,
            "powerLimit": None,
        }
    ]


def test_unsupported_power_limit_and_mig_mode_are_none():
    _, restricted = _collect("t4-not-supported").devices
    assert restricted.power_limit_milliwatts is None
    assert restricted.mig_mode_enabled is None
    assert restricted.memory_total_bytes == 15360 * MiB
    assert restricted.name == "Tesla T4"


def test_power_limit_falls_back_to_the_management_limit():
    recording = load_recording("t4-not-supported")
    recording["devices"][0]["enforced_power_limit_mw"] = {"nvml_error": "NotSupported"}
    recording["devices"][0]["power_management_limit_mw"] = 65000
    assert _collect(recording).devices[0].power_limit_milliwatts == 65000


def test_cuda_visible_devices_renumbers_and_states_the_selection():
    snapshot = _collect("a100-sxm4-80gb", CUDA_VISIBLE_DEVICES="3,1")
    assert [(d.gpu_index, d.nvml_index) for d in snapshot.devices] == [(0, 3), (1, 1)]
    assert _additional(snapshot)["gpu.visibleDevices"] == "2 of 4 GPU(s) by CUDA_VISIBLE_DEVICES"
    assert _additional(_collect("a100-sxm4-80gb"))["gpu.visibleDevices"] == "all 4 GPU(s)"


@pytest.mark.parametrize(
    ("init_error", "environ", "expected_words"),
    [
        ("LibraryNotFound", {}, "libnvidia-ml.so.1"),
        ("DriverNotLoaded", {}, "kernel driver is not loaded"),
        ("LibraryNotFound", {"NVIDIA_VISIBLE_DEVICES": "void"}, "NVIDIA_VISIBLE_DEVICES='void'"),
        (None, {"CUDA_VISIBLE_DEVICES": "-1"}, "leaves no visible GPU"),
    ],
)
def test_unavailable_with_reason(init_error, environ, expected_words):
    recording = load_recording("a100-sxm4-80gb")
    recording["init_error"] = init_error
    with pytest.raises(Unavailable) as raised:
        _collect(recording, **environ)
    assert expected_words in raised.value.reason


def test_collect_releases_nvml_on_success_and_failure():
    fake = build_fake_nvml("h100-80gb-mig")
    GpuStaticCollector(nvml_module=fake, environ={}).collect()
    with pytest.raises(Unavailable):
        GpuStaticCollector(nvml_module=fake, environ={"CUDA_VISIBLE_DEVICES": ""}).collect()
    assert fake.calls["nvmlInit"] == fake.calls["nvmlShutdown"] == 2
