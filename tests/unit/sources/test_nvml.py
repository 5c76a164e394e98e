"""The NVML gateway: initialisation failures, per-query isolation, CUDA_VISIBLE_DEVICES, process memory."""

from __future__ import annotations

import logging
import sys

import pynvml
import pytest

from comet_agent.sources.nvml import (
    NvmlGateway,
    NvmlUnavailable,
    gpu_memory_by_pid,
    parse_cuda_visible_devices,
    select_visible_devices,
)
from tests.support.fake_nvml import build_fake_nvml, load_recording

MiB = 1024 * 1024
A100_UUIDS = [device["uuid"] for device in load_recording("a100-sxm4-80gb")["devices"]]
H100_MIG_3G = "MIG-1f2e3d4c-5b6a-5978-8a9b-0c1d2e3f4a5b"
H100_MIG_1G = "MIG-6a7b8c9d-0e1f-5a2b-9c3d-4e5f6a7b8c9d"


def _no_mig() -> dict:
    raise AssertionError("MIG instances must not be enumerated when no MIG- entry is given")


# -- CUDA_VISIBLE_DEVICES parsing and selection (pure) -------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", []),
        ("   ", []),
        ("0", ["0"]),
        (" 2 , 0 ", ["2", "0"]),
        ("GPU-ab,MIG-cd", ["GPU-ab", "MIG-cd"]),
    ],
)
def test_parse_cuda_visible_devices_splits_and_strips(value, expected):
    assert parse_cuda_visible_devices(value) == expected


def test_select_visible_devices_unset_means_every_device():
    assert select_visible_devices(None, A100_UUIDS, _no_mig) == ([(0, None), (1, None), (2, None), (3, None)], None)


def test_select_visible_devices_by_index_keeps_cuda_order():
    assert select_visible_devices(["2", "0"], A100_UUIDS, _no_mig) == ([(2, None), (0, None)], None)


@pytest.mark.parametrize(
    ("entries", "expected_selection", "stopped_at"),
    [
        (["1", "7", "0"], [(1, None)], "7"),  # out of range: the rest is ignored, as CUDA does
        (["-1"], [], "-1"),  # the usual way to hide every GPU
        (["0", "0", "1"], [(0, None)], "0"),  # a repeated device ends the list
        (["1", "banana", "2"], [(1, None)], "banana"),
        (["0", "", "1"], [(0, None)], ""),
    ],
)
def test_select_visible_devices_stops_at_first_invalid_entry(entries, expected_selection, stopped_at):
    assert select_visible_devices(entries, A100_UUIDS, _no_mig) == (expected_selection, stopped_at)


def test_select_visible_devices_by_full_uuid_and_unique_prefix():
    selection, stopped_at = select_visible_devices([A100_UUIDS[3], "GPU-7c0f"], A100_UUIDS, _no_mig)
    assert (selection, stopped_at) == ([(3, None), (2, None)], None)


def test_select_visible_devices_ambiguous_uuid_prefix_stops():
    # Boards 0 and 1 share the prefix GPU-3b5e2a47-9c1d: CUDA refuses an ambiguous prefix.
    assert select_visible_devices(["GPU-7c0f", "GPU-3b5e2a47"], A100_UUIDS, _no_mig) == ([(2, None)], "GPU-3b5e2a47")


def test_select_visible_devices_by_mig_uuid():
    mig = {H100_MIG_3G: (0, 0), H100_MIG_1G: (0, 2)}
    assert select_visible_devices([H100_MIG_1G, H100_MIG_3G], ["GPU-a", "GPU-b"], lambda: mig) == (
        [(0, 2), (0, 0)],
        None,
    )


def test_select_visible_devices_legacy_mig_format_stops():
    mig = {H100_MIG_3G: (0, 0)}
    legacy = "MIG-GPU-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d/1/0"
    assert select_visible_devices(["1", legacy], ["GPU-a", "GPU-b"], lambda: mig) == ([(1, None)], legacy)


# -- initialisation ------------------------------------------------------------------------------


def test_open_without_pynvml_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    (tmp_path / "nvidiactl").write_text("")  # a driver shows itself, so the bindings are needed
    with pytest.raises(NvmlUnavailable) as raised:
        NvmlGateway(environ={}, driver_paths=[str(tmp_path / "nvidiactl")]).open()
    assert "pip install nvidia-ml-py" in raised.value.reason


@pytest.mark.parametrize(
    ("init_error", "expected_words"),
    [
        ("LibraryNotFound", "libnvidia-ml.so.1"),
        ("DriverNotLoaded", "kernel driver is not loaded"),
        ("LibRmVersionMismatch", "different versions"),
        ("NoPermission", "no permission"),
        ("Unknown", "NVML initialisation failed"),
    ],
)
def test_open_failure_reason_names_the_cause(init_error, expected_words):
    recording = load_recording("a100-sxm4-80gb")
    recording["init_error"] = init_error
    with pytest.raises(NvmlUnavailable) as raised:
        NvmlGateway(module=build_fake_nvml(recording), environ={}).open()
    assert expected_words in raised.value.reason
    assert "NVIDIA_VISIBLE_DEVICES" not in raised.value.reason


def test_open_failure_under_nvidia_visible_devices_void_names_the_variable():
    recording = load_recording("a100-sxm4-80gb")
    recording["init_error"] = "LibraryNotFound"
    gateway = NvmlGateway(module=build_fake_nvml(recording), environ={"NVIDIA_VISIBLE_DEVICES": "void"})
    with pytest.raises(NvmlUnavailable) as raised:
        gateway.visible_gpus()
    assert "NVIDIA_VISIBLE_DEVICES='void'" in raised.value.reason
    assert "libnvidia-ml.so.1" in raised.value.reason


def test_real_pynvml_without_driver_is_unavailable_with_reason():
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this host has a working NVIDIA driver; the no-driver path is covered by the fake")
    with pytest.raises(NvmlUnavailable) as raised:
        NvmlGateway(environ={}).open()
    assert raised.value.reason


def test_zero_devices_is_unavailable():
    recording = load_recording("a100-sxm4-80gb")
    recording["devices"] = []
    with pytest.raises(NvmlUnavailable, match="reports no GPU"):
        NvmlGateway(module=build_fake_nvml(recording), environ={}).visible_gpus()


def test_void_nvidia_visible_devices_does_not_hide_gpus_nvml_can_reach(caplog):
    # clearml#1508: GPU operators using CDI set NVIDIA_VISIBLE_DEVICES=void and still inject GPUs.
    caplog.set_level(logging.INFO, logger="comet_agent.sources.nvml")
    gateway = NvmlGateway(module=build_fake_nvml("a100-sxm4-80gb"), environ={"NVIDIA_VISIBLE_DEVICES": "void"})
    assert len(gateway.visible_gpus()) == 4
    assert "NVIDIA_VISIBLE_DEVICES='void'" in caplog.text


def test_close_balances_init_and_is_idempotent():
    fake = build_fake_nvml("a100-sxm4-80gb")
    gateway = NvmlGateway(module=fake, environ={})
    gateway.open()
    gateway.open()
    gateway.close()
    gateway.close()
    assert fake.calls["nvmlInit"] == 1
    assert fake.calls["nvmlShutdown"] == 1


def test_cuda_visible_devices_hiding_everything_is_unavailable():
    gateway = NvmlGateway(module=build_fake_nvml("a100-sxm4-80gb"), environ={"CUDA_VISIBLE_DEVICES": ""})
    with pytest.raises(NvmlUnavailable, match="CUDA_VISIBLE_DEVICES=''"):
        gateway.visible_gpus()


def test_visible_gpus_by_mig_uuid_points_at_the_mig_handle_and_its_parent():
    gateway = NvmlGateway(module=build_fake_nvml("h100-80gb-mig"), environ={"CUDA_VISIBLE_DEVICES": f"{H100_MIG_1G},1"})
    first, second = gateway.visible_gpus()
    assert (first.visible_index, first.uuid, first.is_mig_instance, first.nvml_index) == (0, H100_MIG_1G, True, 0)
    assert first.parent_uuid == "GPU-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    assert (second.visible_index, second.uuid, second.is_mig_instance) == (
        1,
        "GPU-0b1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e",
        False,
    )


# -- per-query isolation -------------------------------------------------------------------------


def _opened_gateway(recording="a100-sxm4-80gb"):
    fake = build_fake_nvml(recording)
    gateway = NvmlGateway(module=fake, environ={})
    return fake, gateway, gateway.visible_gpus()


def test_query_not_supported_returns_none_once_then_stops_asking(caplog):
    caplog.set_level(logging.DEBUG, logger="comet_agent.sources.nvml")
    fake, gateway, (gpu, *_) = _opened_gateway()
    results = [gateway.query(gpu.device_key, "fan", "nvmlDeviceGetFanSpeed", gpu.handle) for _ in range(3)]
    assert results == [None, None, None]
    assert fake.calls["nvmlDeviceGetFanSpeed"] == 1
    assert gateway.is_unsupported(gpu.device_key, "fan")
    assert caplog.text.count("fan not available") == 1
    assert all(record.levelno == logging.DEBUG for record in caplog.records if "fan" in record.getMessage())


def test_query_unexpected_error_returns_none_logs_once_at_info_and_retries(caplog):
    caplog.set_level(logging.DEBUG, logger="comet_agent.sources.nvml")
    recording = load_recording("a100-sxm4-80gb")
    recording["devices"][0]["temperature_gpu"] = {"nvml_error": "Unknown"}
    fake, gateway, (gpu, *_) = _opened_gateway(recording)
    args = (gpu.device_key, "temperature", "nvmlDeviceGetTemperature", gpu.handle, fake.NVML_TEMPERATURE_GPU)
    assert [gateway.query(*args) for _ in range(3)] == [None, None, None]
    assert fake.calls["nvmlDeviceGetTemperature"] == 3  # transient: asked again each time
    failures = [record for record in caplog.records if "reading temperature failed" in record.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.INFO


def test_query_function_missing_from_bindings_is_unsupported():
    fake, gateway, (gpu, *_) = _opened_gateway()
    del fake.nvmlDeviceGetFanSpeed
    assert gateway.query(gpu.device_key, "fan", "nvmlDeviceGetFanSpeed", gpu.handle) is None
    assert gateway.is_unsupported(gpu.device_key, "fan")


def test_query_decodes_bytes_from_old_bindings():
    fake, gateway, (gpu, *_) = _opened_gateway()
    fake.nvmlDeviceGetName = lambda handle: b"NVIDIA A100-SXM4-80GB"
    assert gateway.query(gpu.device_key, "name", "nvmlDeviceGetName", gpu.handle) == "NVIDIA A100-SXM4-80GB"


def test_memory_info_prefers_v2_and_falls_back_to_v1_when_missing():
    fake, gateway, gpus = _opened_gateway("t4-not-supported")
    total, free, used = gateway.memory_info(gpus[0])
    assert (total, used) == (15360 * MiB, 9000 * MiB)  # v2: driver-reserved memory not counted as used
    total, free, used = gateway.memory_info(gpus[1])
    assert (total, used) == (15360 * MiB, (1000 + 255) * MiB)  # v1: reserved memory included


def test_driver_and_cuda_versions():
    _, gateway, _ = _opened_gateway("h100-80gb-mig")
    assert gateway.driver_version() == "550.54.15"
    assert gateway.cuda_driver_version() == "12.4"


def test_fake_raises_the_real_pynvml_exception_classes():
    fake, _, gpus = _opened_gateway()
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetFanSpeed(gpus[0].handle)


# -- process memory ------------------------------------------------------------------------------


def test_gpu_memory_by_pid_maps_visible_index_to_bytes():
    gateway = NvmlGateway(module=build_fake_nvml("a100-sxm4-80gb"), environ={})
    assert gpu_memory_by_pid(gateway=gateway) == {
        4242: {0: 38000 * MiB, 3: 1500 * MiB},  # C+G on board 3: counted once, not twice
        4250: {0: 2000 * MiB},
        4243: {1: 39000 * MiB},
        # pid 5100's usage is unknown to NVML (None): left out rather than reported as 0
    }


def test_gpu_memory_by_pid_uses_visible_positions_under_cuda_visible_devices():
    gateway = NvmlGateway(module=build_fake_nvml("a100-sxm4-80gb"), environ={"CUDA_VISIBLE_DEVICES": "3,0"})
    assert gpu_memory_by_pid(gateway=gateway)[4242] == {0: 1500 * MiB, 1: 38000 * MiB}


def test_gpu_memory_by_pid_on_mig_instances():
    gateway = NvmlGateway(
        module=build_fake_nvml("h100-80gb-mig"), environ={"CUDA_VISIBLE_DEVICES": f"{H100_MIG_3G},{H100_MIG_1G}"}
    )
    assert gpu_memory_by_pid(gateway=gateway) == {7001: {0: 30000 * MiB}, 7002: {1: 5000 * MiB}}


def test_gpu_memory_by_pid_is_empty_when_nvml_is_unavailable():
    recording = load_recording("a100-sxm4-80gb")
    recording["init_error"] = "DriverNotLoaded"
    assert gpu_memory_by_pid(gateway=NvmlGateway(module=build_fake_nvml(recording), environ={})) == {}


def test_gpu_memory_by_pid_tolerates_unsupported_process_lists():
    gateway = NvmlGateway(module=build_fake_nvml("t4-not-supported"), environ={})
    assert gpu_memory_by_pid(gateway=gateway) == {9001: {0: 9000 * MiB}}


def test_gpu_memory_by_pid_without_gateway_is_empty_on_a_host_without_driver():
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this host has a working NVIDIA driver; tests/gpu covers the real path")
    assert gpu_memory_by_pid() == {}
    assert gpu_memory_by_pid() == {}  # the failure is remembered, not retried each tick


def test_every_board_refusing_access_is_unavailable_with_that_reason():
    recording = load_recording("t4-not-supported")
    for device in recording["devices"]:
        device["handle_error"] = "NoPermission"
    with pytest.raises(NvmlUnavailable, match="may open none of them"):
        NvmlGateway(module=build_fake_nvml(recording), environ={}).visible_gpus()


def test_selection_note_counts_boards_refusing_access():
    recording = load_recording("a100-sxm4-80gb")
    recording["devices"][2]["handle_error"] = "NoPermission"
    gateway = NvmlGateway(module=build_fake_nvml(recording), environ={})
    assert len(gateway.visible_gpus()) == 3
    assert gateway.selection_note == "3 of 4 GPU(s) (the others refuse access)"


def test_without_a_driver_node_open_fails_without_importing_pynvml(tmp_path):
    # A fresh interpreter, so that no earlier test has imported pynvml already.
    import subprocess

    code = (
        "import sys\n"
        "from comet_agent.sources.nvml import NvmlGateway, NvmlUnavailable\n"
        f"gateway = NvmlGateway(driver_paths=[{str(tmp_path / 'nvidiactl')!r}], environ={{}})\n"
        "try:\n    gateway.open()\nexcept NvmlUnavailable as e:\n    print(e.reason)\n"
        "print('pynvml imported:', 'pynvml' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "no NVIDIA driver is loaded here (none of " in result.stdout
    assert result.stdout.endswith("pynvml imported: False\n")


def test_with_a_driver_node_the_real_pynvml_decides(tmp_path):
    node = tmp_path / "nvidiactl"
    node.write_text("")
    gateway = NvmlGateway(driver_paths=[str(node)], environ={})
    try:
        gateway.open()
    except NvmlUnavailable as error:  # this host has the node's stand-in but no NVML library
        assert error.reason  # pynvml's own failure, mapped to a reason
        assert gateway.module is pynvml
    else:
        gateway.close()
        pytest.skip("this host has a working NVML; the no-library path cannot be shown here")
