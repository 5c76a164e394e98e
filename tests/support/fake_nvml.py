"""A pynvml-shaped module built from recorded per-GPU-model values (tests/fixtures/nvml/<model>.json).

This is an edge substitution, not a mock of comet_agent: ``comet_agent.sources.nvml`` takes the
pynvml module as a parameter, and tests hand it this one. It exposes the function names the real
pynvml has, the real ``NVML_*`` constants, and raises the *real* ``pynvml.NVMLError_*`` classes
where the recording says so: a value written ``{"nvml_error": "NotSupported"}`` raises
``pynvml.NVMLError_NotSupported`` when read.

Fixture shape (one file per GPU model; see the files for complete examples)::

    {"driver_version": "535.154.05", "cuda_driver_version": 12020,
     "init_error": null,                       # or "LibraryNotFound", "DriverNotLoaded", ...
     "devices": [{"name", "uuid", "pci_bus_id", "handle_error" (optional: "NoPermission", ...),
                  "memory": {"total", "reserved", "used", "free"},   # v2 figures (bytes)
                  "utilization": {"gpu", "memory"}, "temperature_gpu", "power_usage_mw",
                  "enforced_power_limit_mw", "power_management_limit_mw", "clock_sm_mhz",
                  "clock_mem_mhz", "fan_speed_percent", "clocks_event_reasons", "ecc_corrected",
                  "ecc_uncorrected", "mig_mode": [current, pending], "max_mig_device_count",
                  "mig_devices": [{"slot", ...same keys...}],
                  "compute_processes": [{"pid", "used_gpu_memory"}], "graphics_processes": [],
                  "pcie_throughput_kbps": {"tx", "rx"},     # nvmlDeviceGetPcieThroughput (KB/s)
                  "nvlink": {"data_tx_kib", "data_rx_kib", "crc_flit_errors", "crc_data_errors",
                             "replay_errors", "recovery_errors"},   # field values, all links
                  "retired_pages": {"sbe": [addresses], "dbe": [addresses], "pending": 0 or 1},
                  "remapped_rows": [correctable, uncorrectable, pending, failure],
                  "process_utilization": [{"pid", "time_stamp_us", "sm_util", "mem_util"}]}]}

``"nvlink": {"nvml_error": "NotSupported"}`` answers as NVML does on a board without NVLink: the
field-values call succeeds and every field carries NVML_ERROR_NOT_SUPPORTED.

Every function call is counted in ``module.calls`` (name -> count), so tests can check that an
unsupported field is not asked again and benchmarks can count raw calls.
"""

from __future__ import annotations

import copy
import json
import types
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Union

import pynvml

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "nvml"
MODELS = ("a100-sxm4-80gb", "h100-80gb-mig", "t4-not-supported", "rtx-a6000")


def load_recording(model: str) -> dict:
    """The recorded values of one model, as a fresh dict the test may edit."""
    return json.loads((FIXTURES_DIR / f"{model}.json").read_text())


def nvml_error(name: str) -> pynvml.NVMLError:
    """A real pynvml exception instance, e.g. ``nvml_error("NotSupported")``."""
    error_class = getattr(pynvml, f"NVMLError_{name}", None)
    if error_class is None:
        raise LookupError(f"pynvml has no NVMLError_{name}; fix the fixture")
    return error_class()


def _constant_name(error_name: str) -> str:
    """``NotSupported`` -> ``NOT_SUPPORTED`` (the NVML_ERROR_* constant of an NVMLError_* class)."""
    return "".join("_" + c if c.isupper() and i else c for i, c in enumerate(error_name)).upper()


class FakeHandle:
    """An NVML device handle: a board, or a MIG instance with its parent board."""

    def __init__(self, spec: dict, parent: Optional["FakeHandle"] = None):
        self.spec = spec
        self.parent = parent

    def __repr__(self) -> str:
        return f"FakeHandle({self.spec.get('uuid')!r})"


def _read(handle: FakeHandle, key: str) -> Any:
    if key not in handle.spec:
        raise LookupError(f"fixture device {handle.spec.get('uuid')!r} has no {key!r}; record it or mark it nvml_error")
    value = handle.spec[key]
    if isinstance(value, dict) and "nvml_error" in value:
        raise nvml_error(value["nvml_error"])
    return value


def build_fake_nvml(recording: Union[str, dict]) -> types.ModuleType:
    """Build a module object that behaves like pynvml on the recorded machine.

    Args:
        recording: a model name under tests/fixtures/nvml/, or an already loaded (edited) dict.

    Returns:
        The fake module; ``module.calls`` counts calls by function name.
    """
    spec = load_recording(recording) if isinstance(recording, str) else copy.deepcopy(recording)
    module = types.ModuleType("fake_pynvml")
    # The real exception classes and constants: code under test catches pynvml.NVMLError_*.
    for name in dir(pynvml):
        if name.startswith(("NVMLError", "NVML_")) or name in ("nvmlMemory_v2",):
            setattr(module, name, getattr(pynvml, name))
    module.calls = Counter()
    state = {"initialised": 0}
    boards = [FakeHandle(device) for device in spec["devices"]]
    migs = [FakeHandle(mig, parent=board) for board in boards for mig in board.spec.get("mig_devices", [])]

    def counted(function):
        def wrapper(*args, **kwargs):
            module.calls[function.__name__] += 1
            return function(*args, **kwargs)

        wrapper.__name__ = function.__name__
        setattr(module, function.__name__, wrapper)
        return wrapper

    def require_init():
        if state["initialised"] <= 0:
            raise nvml_error("Uninitialized")

    @counted
    def nvmlInit():
        if spec.get("init_error"):
            raise nvml_error(spec["init_error"])
        state["initialised"] += 1

    @counted
    def nvmlShutdown():
        require_init()
        state["initialised"] -= 1

    @counted
    def nvmlSystemGetDriverVersion():
        require_init()
        return spec["driver_version"]

    @counted
    def nvmlSystemGetCudaDriverVersion():
        return spec["cuda_driver_version"]

    @counted
    def nvmlSystemGetCudaDriverVersion_v2():
        return spec["cuda_driver_version"]

    @counted
    def nvmlDeviceGetCount():
        require_init()
        return len(boards)

    @counted
    def nvmlDeviceGetHandleByIndex(index):
        require_init()
        if not 0 <= index < len(boards):
            raise nvml_error("InvalidArgument")
        if boards[index].spec.get("handle_error"):  # e.g. a board outside this job's device cgroup
            raise nvml_error(boards[index].spec["handle_error"])
        return boards[index]

    @counted
    def nvmlDeviceGetHandleByUUID(uuid):
        require_init()
        for handle in boards + migs:
            if handle.spec["uuid"] == uuid:
                return handle
        raise nvml_error("NotFound")

    @counted
    def nvmlDeviceGetName(handle):
        return _read(handle, "name")

    @counted
    def nvmlDeviceGetUUID(handle):
        return _read(handle, "uuid")

    @counted
    def nvmlDeviceGetMemoryInfo(handle, version=None):
        memory = _read(handle, "memory")
        if version is not None:
            if "memory_v2" in handle.spec:
                _read(handle, "memory_v2")  # raises what the recording says (old drivers: FunctionNotFound)
            return types.SimpleNamespace(
                version=version,
                total=memory["total"],
                reserved=memory["reserved"],
                free=memory["free"],
                used=memory["used"],
            )
        # The v1 struct counts driver-reserved memory as used (gpustat#141).
        return types.SimpleNamespace(
            total=memory["total"], free=memory["free"], used=memory["used"] + memory["reserved"]
        )

    @counted
    def nvmlDeviceGetUtilizationRates(handle):
        rates = _read(handle, "utilization")
        return types.SimpleNamespace(gpu=rates["gpu"], memory=rates["memory"])

    @counted
    def nvmlDeviceGetTemperature(handle, sensor):
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise nvml_error("InvalidArgument")
        return _read(handle, "temperature_gpu")

    @counted
    def nvmlDeviceGetPowerUsage(handle):
        return _read(handle, "power_usage_mw")

    @counted
    def nvmlDeviceGetEnforcedPowerLimit(handle):
        return _read(handle, "enforced_power_limit_mw")

    @counted
    def nvmlDeviceGetPowerManagementLimit(handle):
        return _read(handle, "power_management_limit_mw")

    @counted
    def nvmlDeviceGetClockInfo(handle, clock_type):
        key = {pynvml.NVML_CLOCK_SM: "clock_sm_mhz", pynvml.NVML_CLOCK_MEM: "clock_mem_mhz"}.get(clock_type)
        if key is None:
            raise nvml_error("InvalidArgument")
        return _read(handle, key)

    @counted
    def nvmlDeviceGetFanSpeed(handle):
        return _read(handle, "fan_speed_percent")

    @counted
    def nvmlDeviceGetCurrentClocksEventReasons(handle):
        return _read(handle, "clocks_event_reasons")

    @counted
    def nvmlDeviceGetCurrentClocksThrottleReasons(handle):
        return _read(handle, "clocks_event_reasons")

    @counted
    def nvmlDeviceGetTotalEccErrors(handle, error_type, counter_type):
        if counter_type != pynvml.NVML_VOLATILE_ECC:
            raise nvml_error("InvalidArgument")
        if error_type == pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED:
            return _read(handle, "ecc_corrected")
        return _read(handle, "ecc_uncorrected")

    @counted
    def nvmlDeviceGetPciInfo(handle):
        return types.SimpleNamespace(busId=_read(handle, "pci_bus_id"))

    @counted
    def nvmlDeviceGetMigMode(handle):
        return list(_read(handle, "mig_mode"))

    @counted
    def nvmlDeviceGetMaxMigDeviceCount(handle):
        return _read(handle, "max_mig_device_count")

    @counted
    def nvmlDeviceGetMigDeviceHandleByIndex(handle, index):
        if handle.parent is not None or _read(handle, "mig_mode")[0] != pynvml.NVML_DEVICE_MIG_ENABLE:
            raise nvml_error("InvalidArgument")
        for mig in migs:
            if mig.parent is handle and mig.spec["slot"] == index:
                return mig
        raise nvml_error("NotFound")

    @counted
    def nvmlDeviceIsMigDeviceHandle(handle):
        return handle.parent is not None

    @counted
    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle):
        if handle.parent is None:
            raise nvml_error("InvalidArgument")
        return handle.parent

    @counted
    def nvmlDeviceGetPcieThroughput(handle, counter):
        throughput = _read(handle, "pcie_throughput_kbps")
        if counter == pynvml.NVML_PCIE_UTIL_TX_BYTES:
            return throughput["tx"]
        if counter == pynvml.NVML_PCIE_UTIL_RX_BYTES:
            return throughput["rx"]
        raise nvml_error("InvalidArgument")

    nvlink_keys = {
        pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: "data_tx_kib",
        pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: "data_rx_kib",
        pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL: "crc_flit_errors",
        pynvml.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL: "crc_data_errors",
        pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL: "replay_errors",
        pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL: "recovery_errors",
    }

    @counted
    def nvmlDeviceGetFieldValues(handle, field_ids):
        # Like the real call: it succeeds as a whole, and each field carries its own return code.
        recorded = handle.spec.get("nvlink")
        if recorded is None:
            raise LookupError(f"fixture device {handle.spec.get('uuid')!r} has no 'nvlink'; record it")
        values = []
        for field in field_ids:
            field_id, scope_id = field if isinstance(field, tuple) else (field, 0)
            key = nvlink_keys.get(field_id)
            if "nvml_error" in recorded or key is None:
                code = getattr(pynvml, f"NVML_ERROR_{_constant_name(recorded.get('nvml_error', 'NotSupported'))}")
                number = 0
            else:
                code, number = pynvml.NVML_SUCCESS, recorded[key]
            values.append(
                types.SimpleNamespace(
                    fieldId=field_id,
                    scopeId=scope_id,
                    nvmlReturn=code,
                    valueType=pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
                    value=types.SimpleNamespace(ullVal=number),
                )
            )
        return values

    @counted
    def nvmlDeviceGetRetiredPages(handle, cause):
        pages = _read(handle, "retired_pages")
        if cause == pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS:
            return list(pages["sbe"])
        if cause == pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR:
            return list(pages["dbe"])
        raise nvml_error("InvalidArgument")

    @counted
    def nvmlDeviceGetRetiredPagesPendingStatus(handle):
        pending = _read(handle, "retired_pages")["pending"]
        return pynvml.NVML_FEATURE_ENABLED if pending else pynvml.NVML_FEATURE_DISABLED

    @counted
    def nvmlDeviceGetRemappedRows(handle):
        return tuple(_read(handle, "remapped_rows"))

    @counted
    def nvmlDeviceGetProcessUtilization(handle, time_stamp):
        # NVML answers the samples newer than time_stamp, and NOT_FOUND when there are none.
        newer = [sample for sample in _read(handle, "process_utilization") if sample["time_stamp_us"] > time_stamp]
        if not newer:
            raise nvml_error("NotFound")
        return [
            types.SimpleNamespace(
                pid=sample["pid"],
                timeStamp=sample["time_stamp_us"],
                smUtil=sample["sm_util"],
                memUtil=sample["mem_util"],
                encUtil=0,
                decUtil=0,
            )
            for sample in newer
        ]

    def _processes(handle, key):
        return [
            types.SimpleNamespace(pid=process["pid"], usedGpuMemory=process["used_gpu_memory"])
            for process in _read(handle, key)
        ]

    @counted
    def nvmlDeviceGetComputeRunningProcesses(handle):
        return _processes(handle, "compute_processes")

    @counted
    def nvmlDeviceGetGraphicsRunningProcesses(handle):
        return _processes(handle, "graphics_processes")

    return module
