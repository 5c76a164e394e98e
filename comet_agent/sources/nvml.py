"""NVML gateway: the only module that imports ``pynvml`` (from the ``nvidia-ml-py`` distribution).

Everything the agent knows about NVIDIA GPUs passes through :class:`NvmlGateway`:

- ``pynvml`` is imported and ``nvmlInit()`` called lazily, on :meth:`NvmlGateway.open`, and only
  where a driver shows itself (``DRIVER_PATHS``: nothing to import on a host without one); a failure
  becomes :class:`NvmlUnavailable` with a reason a person can act on (no bindings, no driver
  library, driver not loaded, library/driver version mismatch, no device...).
- :meth:`NvmlGateway.query` is the single call path for per-device readings: it returns the value,
  or ``None`` when the field is unsupported or the call failed. Unsupported fields
  (``NVMLError_NotSupported``, a function the driver or bindings lack) are logged once at DEBUG and
  not asked again; an unexpected ``NVMLError`` is logged once at INFO and asked again next time.
  One failing query therefore degrades one field, never the whole GPU (mlflow#14736).
- :meth:`NvmlGateway.visible_gpus` applies ``CUDA_VISIBLE_DEVICES`` the way CUDA does: indices,
  ``GPU-`` UUIDs (unique prefixes allowed) and ``MIG-`` UUIDs, stopping at the first invalid or
  repeated entry. Reported indices are positions in that list, as comet_ml reports them.
- :func:`gpu_memory_by_pid` and :func:`gpu_utilization_reader` serve the process-tree collector.

Tests inject a fake module built from recorded values (``tests/support/fake_nvml.py``) through the
``module`` argument; production code passes nothing and gets the real ``pynvml``.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

logger = logging.getLogger(__name__)

# Reasons for an NVML initialisation failure, by pynvml exception class name: what it means and
# what to do about it (gpustat#147: a version mismatch must not end in silence).
_INIT_FAILURE_REASONS = {
    "NVMLError_LibraryNotFound": (
        "the NVML library (libnvidia-ml.so.1) was not found: no NVIDIA driver is installed, "
        "or it is not mounted into this container"
    ),
    "NVMLError_DriverNotLoaded": "the NVIDIA kernel driver is not loaded (nvidia-smi would fail too)",
    "NVMLError_NoPermission": "no permission to open the NVIDIA devices (/dev/nvidia*)",
    "NVMLError_LibRmVersionMismatch": (
        "the NVML library and the loaded kernel driver have different versions "
        "(driver upgraded without a reboot or module reload)"
    ),
    "NVMLError_InsufficientResources": "the NVIDIA driver reported insufficient resources at NVML start",
}

# NVML errors that mean "this device will never answer this query": asked once, then remembered.
_PERMANENTLY_UNSUPPORTED = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound", "NVMLError_NoPermission")

# Errors that are an answer, not a failure, for one field: asked again next tick, never logged.
# (nvmlDeviceGetProcessUtilization says NOT_FOUND when no process ran since the last call.)
_EXPECTED_ERRORS = {"process_utilization": ("NVMLError_NotFound",)}
# Where a loaded NVIDIA driver shows itself: the control device node (Linux, and the NVIDIA
# container runtime mounts it), the driver's /proc directory, or WSL2's GPU paravirtualisation
# device. With none of them NVML cannot initialise, so pynvml (~1.3 MB resident) is not imported.
DRIVER_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/dxg")

# NVIDIA_VISIBLE_DEVICES values with which the NVIDIA container runtime exposes no GPU.
_NO_GPU_CONTAINER_VALUES = ("void", "none", "")


class NvmlUnavailable(Exception):
    """NVML cannot be used here; ``reason`` says why in words a person can act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VisibleGpu:
    """One device in the visible list: a physical board, or a MIG instance named in CUDA_VISIBLE_DEVICES.

    ``visible_index`` is its position in the visible list (the index reported to Comet);
    ``nvml_index`` is the physical NVML index of the board (of the parent board for a MIG
    instance); ``handle`` is the NVML handle to query (the MIG handle for a MIG instance).
    """

    visible_index: int
    nvml_index: int
    handle: Any
    uuid: Optional[str]
    is_mig_instance: bool = False
    parent_handle: Any = None
    parent_uuid: Optional[str] = None

    @property
    def device_key(self) -> str:
        """A stable key for once-only logging: the UUID, or the NVML index when it has none."""
        return self.uuid or f"nvml-index-{self.nvml_index}"


def _import_pynvml():
    import pynvml  # the nvidia-ml-py distribution; the "pynvml" distribution is deprecated

    return pynvml


def _as_text(value: Any) -> Any:
    """Old bindings return bytes for strings; everything above this module sees str."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def parse_cuda_visible_devices(value: Optional[str]) -> Optional[list[str]]:
    """Split a ``CUDA_VISIBLE_DEVICES`` value into entries.

    Args:
        value: the variable's value, or ``None`` when it is unset.

    Returns:
        ``None`` when unset (every device is visible), else the stripped entries in order; an empty
        value gives ``[]`` (no device visible).
    """
    if value is None:
        return None
    if not value.strip():
        return []
    return [entry.strip() for entry in value.split(",")]


def select_visible_devices(
    entries: Optional[Sequence[str]],
    device_uuids: Sequence[Optional[str]],
    mig_uuids: Callable[[], Mapping[str, tuple[int, int]]],
) -> tuple[list[tuple[int, Optional[int]]], Optional[str]]:
    """Resolve ``CUDA_VISIBLE_DEVICES`` entries to devices, with CUDA's rules.

    CUDA stops at the first entry it cannot resolve (an index out of range, an unknown or
    ambiguous UUID, a repeated device, anything else) and ignores the rest; so do we.

    Args:
        entries: from :func:`parse_cuda_visible_devices` (``None``: all devices).
        device_uuids: the UUID of each physical device, by NVML index.
        mig_uuids: called only when a ``MIG-`` entry appears (enumerating MIG instances costs NVML
            calls); maps each MIG instance UUID to ``(parent NVML index, MIG slot)``.

    Returns:
        ``(selection, stopped_at)``: ``selection`` is a list of ``(nvml_index, mig_slot or None)``
        in visible order; ``stopped_at`` names the entry that ended the list early, else ``None``.
    """
    if entries is None:
        return [(index, None) for index in range(len(device_uuids))], None
    selection: list[tuple[int, Optional[int]]] = []
    for entry in entries:
        chosen: Optional[tuple[int, Optional[int]]] = None
        if entry.isdigit():
            index = int(entry)
            if index < len(device_uuids):
                chosen = (index, None)
        elif entry.startswith("GPU-"):
            matches = [i for i, uuid in enumerate(device_uuids) if uuid and uuid.startswith(entry)]
            if len(matches) == 1:  # CUDA accepts a unique prefix, and rejects an ambiguous one
                chosen = (matches[0], None)
        elif entry.startswith("MIG-"):
            # Legacy "MIG-GPU-<uuid>/<gi>/<ci>" entries (drivers before R470) are not resolved: they
            # end the list, which the caller reports.
            matches_mig = [value for uuid, value in mig_uuids().items() if uuid.startswith(entry)]
            if len(matches_mig) == 1:
                chosen = matches_mig[0]
        if chosen is None or chosen in selection:
            return selection, entry
        selection.append(chosen)
    return selection, None


class NvmlGateway:
    """Lazily initialised access to NVML with per-query isolation.

    Args:
        module: a ``pynvml``-shaped module; ``None`` imports the real ``pynvml`` on :meth:`open`.
        environ: the environment to read ``CUDA_VISIBLE_DEVICES`` and ``NVIDIA_VISIBLE_DEVICES``
            from; ``None`` means ``os.environ``.
        driver_paths: paths of which at least one exists where an NVIDIA driver is loaded; when
            none does, :meth:`open` fails without importing ``pynvml``. Only consulted when
            ``module`` is ``None``.

    Example:
        >>> gateway = NvmlGateway()
        >>> try:
        ...     gateway.open()
        ... except NvmlUnavailable as error:
        ...     print(error.reason)
    """

    def __init__(
        self,
        *,
        module: Any = None,
        environ: Optional[Mapping[str, str]] = None,
        driver_paths: Sequence[str] = DRIVER_PATHS,
    ):
        self._module = module
        self._driver_paths = tuple(driver_paths)
        self._environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self._opened = False
        self._visible: Optional[list[VisibleGpu]] = None
        self._selection_note: Optional[str] = None
        self._unsupported: set[tuple[str, str]] = set()
        self._logged_failures: set[tuple[str, str]] = set()
        self._nvlink_request: Optional[tuple[list[Any], dict[int, tuple[str, int]]]] = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def module(self) -> Any:
        """The pynvml module in use (after :meth:`open`)."""
        return self._module

    def open(self) -> None:
        """Import pynvml if needed and initialise NVML; safe to call more than once.

        Raises:
            NvmlUnavailable: the bindings are missing or NVML cannot initialise (reason included).
        """
        with self._lock:
            if self._opened:
                return
            if self._module is None:
                # Already imported by the process (the training code, or a test's recorded GPU
                # model standing in for the bindings): using it costs no memory, so no probe first.
                self._module = sys.modules.get("pynvml")
            if self._module is None:
                if not any(os.path.exists(path) for path in self._driver_paths):
                    raise NvmlUnavailable(
                        self._with_container_hint(
                            "no NVIDIA driver is loaded here (none of "
                            + ", ".join(self._driver_paths)
                            + " exists), or no GPU is exposed to this container"
                        )
                    )
                try:
                    self._module = _import_pynvml()
                except ImportError as error:
                    raise NvmlUnavailable(
                        self._with_container_hint(
                            f"the pynvml module is not importable ({error}); install it with `pip install nvidia-ml-py`"
                        )
                    ) from None
            try:
                self._module.nvmlInit()
            except self._module.NVMLError as error:
                reason = _INIT_FAILURE_REASONS.get(type(error).__name__, f"NVML initialisation failed: {error}")
                raise NvmlUnavailable(self._with_container_hint(reason)) from None
            self._opened = True

    def close(self) -> None:
        """Shut NVML down (NVML counts init/shutdown pairs); safe to call more than once."""
        with self._lock:
            if not self._opened:
                return
            self._opened = False
            self._visible = None
            try:
                self._module.nvmlShutdown()
            except self._module.NVMLError as error:
                logger.debug("nvmlShutdown failed: %s", error)

    def _with_container_hint(self, reason: str) -> str:
        value = self._environ.get("NVIDIA_VISIBLE_DEVICES")
        if value is not None and value.strip().lower() in _NO_GPU_CONTAINER_VALUES:
            return f"{reason} (NVIDIA_VISIBLE_DEVICES={value!r}: the container runtime was asked to expose no GPU)"
        return reason

    # -- queries ------------------------------------------------------------------------------

    def query(self, device_key: str, field: str, function_name: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``pynvml.<function_name>(*args)``; return its value, or ``None`` when it cannot answer.

        Args:
            device_key: identifies the device for once-only logging (its UUID).
            field: the reading's name, for logs and the unsupported cache (``"fan_speed"``).
            function_name: the pynvml function to call.

        Returns:
            The value (bytes decoded to str), or ``None`` if the field is unsupported on this device
            (remembered: later calls return ``None`` without asking NVML) or the call failed.
        """
        key = (device_key, field)
        if key in self._unsupported:
            return None
        function = getattr(self._module, function_name, None)
        if function is None:
            # Bindings older than the driver: the function does not exist in this pynvml.
            self._unsupported.add(key)
            logger.debug("GPU %s: %s unavailable: pynvml has no %s", device_key, field, function_name)
            return None
        try:
            return _as_text(function(*args, **kwargs))
        except self._module.NVMLError as error:
            error_name = type(error).__name__
            if error_name in _EXPECTED_ERRORS.get(field, ()):
                return None
            if error_name in _PERMANENTLY_UNSUPPORTED:
                self._unsupported.add(key)
                log_level = logging.INFO if error_name == "NVMLError_NoPermission" else logging.DEBUG
                logger.log(log_level, "GPU %s: %s not available (%s); not asked again", device_key, field, error)
            else:
                self._log_failure_once(key, "GPU %s: reading %s failed: %s", device_key, field, error)
            return None
        except (UnicodeDecodeError, ValueError, OSError) as error:
            self._log_failure_once(key, "GPU %s: reading %s failed: %s", device_key, field, error)
            return None

    def _log_failure_once(self, key: tuple[str, str], message: str, *args: Any) -> None:
        if key not in self._logged_failures:
            self._logged_failures.add(key)
            logger.info(message, *args)

    def is_unsupported(self, device_key: str, field: str) -> bool:
        """Whether ``field`` was found unsupported on the device (it is no longer queried)."""
        return (device_key, field) in self._unsupported

    def driver_version(self) -> Optional[str]:
        """The driver version string (``nvidia-smi --query-gpu=driver_version``), or ``None``."""
        return self.query("system", "driver_version", "nvmlSystemGetDriverVersion")

    def cuda_driver_version(self) -> Optional[str]:
        """The CUDA version the driver supports, as ``"12.4"``, or ``None``."""
        version = self.query("system", "cuda_driver_version", "nvmlSystemGetCudaDriverVersion_v2")
        if version is None:
            version = self.query("system", "cuda_driver_version_v1", "nvmlSystemGetCudaDriverVersion")
        if not isinstance(version, int):
            return None
        return f"{version // 1000}.{(version % 1000) // 10}"

    # -- device selection ---------------------------------------------------------------------

    def visible_gpus(self) -> list[VisibleGpu]:
        """The devices this job may use, in CUDA order; computed once and cached.

        Opens NVML if needed.

        Raises:
            NvmlUnavailable: NVML cannot start, finds no device, this process may open none of
                them, or ``CUDA_VISIBLE_DEVICES`` hides every one.
        """
        if self._visible is not None:
            return self._visible
        self.open()
        count = self.query("system", "device_count", "nvmlDeviceGetCount")
        if not count:
            raise NvmlUnavailable(self._with_container_hint("NVML is running but reports no GPU"))
        container_value = self._environ.get("NVIDIA_VISIBLE_DEVICES")
        if container_value is not None and container_value.strip().lower() in _NO_GPU_CONTAINER_VALUES:
            # clearml#1508: GPU operators using CDI set the variable to "void" and still inject
            # devices. NVML is the authority: what it can reach is monitored.
            logger.info(
                "NVIDIA_VISIBLE_DEVICES=%r, but NVML reaches %d GPU(s); monitoring them", container_value, count
            )
        # A board this process may not open (a Slurm or container device cgroup) answers
        # NoPermission here: it is left out of the visible list, the others carry on.
        handles = [
            self.query(f"nvml-index-{index}", "handle", "nvmlDeviceGetHandleByIndex", index) for index in range(count)
        ]
        uuids = [
            self.query(f"nvml-index-{index}", "uuid", "nvmlDeviceGetUUID", handle) if handle is not None else None
            for index, handle in enumerate(handles)
        ]
        mig_cache: dict[str, tuple[int, int]] = {}
        mig_handles: dict[tuple[int, int], tuple[Any, str]] = {}

        def enumerate_mig_uuids() -> Mapping[str, tuple[int, int]]:
            if not mig_cache:
                for index, handle in enumerate(handles):
                    if handle is None:
                        continue
                    for slot, mig_handle, mig_uuid in self.mig_instances(handle, uuids[index] or f"nvml-index-{index}"):
                        mig_cache[mig_uuid] = (index, slot)
                        mig_handles[(index, slot)] = (mig_handle, mig_uuid)
            return mig_cache

        raw_value = self._environ.get("CUDA_VISIBLE_DEVICES")
        selection, stopped_at = select_visible_devices(
            parse_cuda_visible_devices(raw_value), uuids, enumerate_mig_uuids
        )
        if stopped_at is not None:
            logger.info(
                "CUDA_VISIBLE_DEVICES=%r: entry %r names no usable GPU; as CUDA does, later entries are ignored",
                raw_value,
                stopped_at,
            )
        visible: list[VisibleGpu] = []
        for index, slot in selection:
            if handles[index] is None:
                continue
            if slot is None:
                visible.append(VisibleGpu(len(visible), index, handles[index], uuids[index]))
            else:
                mig_handle, mig_uuid = mig_handles[(index, slot)]
                visible.append(
                    VisibleGpu(len(visible), index, mig_handle, mig_uuid, True, handles[index], uuids[index])
                )
        if not visible:
            if raw_value is None:
                raise NvmlUnavailable(f"NVML reports {count} GPU(s), but this process may open none of them")
            raise NvmlUnavailable(f"CUDA_VISIBLE_DEVICES={raw_value!r} leaves no visible GPU out of {count}")
        if len(visible) == count and raw_value is None:
            self._selection_note = f"all {count} GPU(s)"
        elif raw_value is None:
            self._selection_note = f"{len(visible)} of {count} GPU(s) (the others refuse access)"
        else:
            self._selection_note = f"{len(visible)} of {count} GPU(s) by CUDA_VISIBLE_DEVICES"
        self._visible = visible
        return visible

    @property
    def selection_note(self) -> Optional[str]:
        """How the visible list was chosen (after :meth:`visible_gpus`), e.g. ``"all 4 GPU(s)"``."""
        return self._selection_note

    def mig_instances(self, handle: Any, device_key: str) -> list[tuple[int, Any, str]]:
        """The MIG instances of a board: ``(slot, handle, uuid)``; empty when MIG is off or unsupported."""
        mode = self.query(device_key, "mig_mode", "nvmlDeviceGetMigMode", handle)
        if not mode or mode[0] != getattr(self._module, "NVML_DEVICE_MIG_ENABLE", 1):
            return []
        slots = self.query(device_key, "max_mig_device_count", "nvmlDeviceGetMaxMigDeviceCount", handle) or 0
        instances = []
        for slot in range(slots):
            try:
                mig_handle = self._module.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except self._module.NVMLError:
                continue  # NVML_ERROR_NOT_FOUND: an empty slot, the normal case
            mig_uuid = self.query(device_key, f"mig-{slot}-uuid", "nvmlDeviceGetUUID", mig_handle)
            if mig_uuid:
                instances.append((slot, mig_handle, mig_uuid))
        return instances

    def memory_info(self, gpu: VisibleGpu) -> Optional[tuple[int, int, int]]:
        """``(total, free, used)`` bytes of one device, or ``None`` when NVML cannot say.

        Uses the v2 memory API where the driver has it: on drivers >= R510 the v1 "used" figure
        also counts memory the driver reserves (gpustat#141); v2 reports it apart. Falls back to v1
        only when v2 is unsupported, so a device costs one call per tick.
        """
        version = getattr(self._module, "nvmlMemory_v2", None)
        if version is not None and not self.is_unsupported(gpu.device_key, "memory_v2"):
            info = self.query(gpu.device_key, "memory_v2", "nvmlDeviceGetMemoryInfo", gpu.handle, version=version)
            if info is not None:
                return int(info.total), int(info.free), int(info.used)
            if not self.is_unsupported(gpu.device_key, "memory_v2"):
                return None  # a transient failure: v1 would most likely fail the same way
        info = self.query(gpu.device_key, "memory", "nvmlDeviceGetMemoryInfo", gpu.handle)
        if info is None:
            return None
        return int(info.total), int(info.free), int(info.used)

    def running_process_memory(self, gpu: VisibleGpu) -> dict[int, int]:
        """Memory held by each process on one visible device: ``{pid: used bytes}``.

        Compute and graphics lists are merged; a process in both (a C+G context) is counted once,
        with the larger figure. A process whose usage NVML cannot report (``None``) is left out.
        The pids are those of the host's PID namespace (the driver's view).
        """
        used_by_pid: dict[int, int] = {}
        for field, function_name in (
            ("compute_processes", "nvmlDeviceGetComputeRunningProcesses"),
            ("graphics_processes", "nvmlDeviceGetGraphicsRunningProcesses"),
        ):
            for process in self.query(gpu.device_key, field, function_name, gpu.handle) or ():
                used_bytes = getattr(process, "usedGpuMemory", None)
                if isinstance(used_bytes, int):
                    used_by_pid[process.pid] = max(used_bytes, used_by_pid.get(process.pid, 0))
        return used_by_pid

    def process_utilization(self, gpu: VisibleGpu, since_us: int = 0) -> tuple[dict[int, float], int]:
        """SM utilisation of each process on one device, from NVML's samples newer than ``since_us``.

        ``nvmlDeviceGetProcessUtilization`` keeps a short history of per-process samples (epoch
        microseconds); a process's figure is the mean of its samples in the window.

        Returns:
            ``({pid: percent}, newest sample time in us)``: the time to pass as ``since_us`` next;
            ``({}, since_us)`` when no process ran since, or where unsupported (MIG, vGPU). The pids
            are the host's, as for :meth:`running_process_memory`.
        """
        samples = self.query(
            gpu.device_key, "process_utilization", "nvmlDeviceGetProcessUtilization", gpu.handle, since_us
        )
        by_pid: dict[int, list[float]] = {}
        newest_us = since_us
        for sample in samples or ():
            stamp = int(getattr(sample, "timeStamp", 0))
            if stamp > since_us:
                newest_us = max(newest_us, stamp)
                by_pid.setdefault(sample.pid, []).append(float(sample.smUtil))
        return {pid: sum(values) / len(values) for pid, values in by_pid.items()}, newest_us

    # -- interconnect and memory health (one call or two per device; unsupported ones stop) -----

    def pcie_throughput(self, gpu: VisibleGpu) -> tuple[Optional[int], Optional[int]]:
        """``(tx, rx)`` PCIe bytes per second of one device (``nvmlDeviceGetPcieThroughput``).

        NVML measures over its last 20 ms and reports KB/s (1024 bytes); ``None`` where
        unsupported (MIG instances, vGPUs).
        """
        module = self._module
        values = []
        for field, counter in (("pcie_tx", "NVML_PCIE_UTIL_TX_BYTES"), ("pcie_rx", "NVML_PCIE_UTIL_RX_BYTES")):
            kilobytes = self.query(
                gpu.device_key, field, "nvmlDeviceGetPcieThroughput", gpu.handle, getattr(module, counter, None)
            )
            values.append(int(kilobytes) * 1024 if isinstance(kilobytes, int) else None)
        return values[0], values[1]

    def nvlink_counters(self, gpu: VisibleGpu) -> dict[str, Optional[int]]:
        """NVLink totals over all links of one device, by ``NVLINK_FIELDS`` key; ``{}`` without NVLink.

        One ``nvmlDeviceGetFieldValues`` call per tick answers them all. Throughput counters are
        data bytes (NVML counts KiB); error counters are counts. A board whose every field answers
        NOT_SUPPORTED (no NVLink: PCIe boards, T4) is not asked again.
        """
        key = gpu.device_key
        if (key, "nvlink") in self._unsupported:
            return {}
        request, by_id = self._nvlink_plan()
        values = self.query(key, "nvlink", "nvmlDeviceGetFieldValues", gpu.handle, request) if request else None
        if values is None:
            if not request:
                self._unsupported.add((key, "nvlink"))
            return {}
        success = getattr(self._module, "NVML_SUCCESS", 0)
        result: dict[str, Optional[int]] = {}
        for value in values:
            name, scale = by_id.get(value.fieldId, (None, 1))
            if name is not None:
                number = _field_value(value) if value.nvmlReturn == success else None
                result[name] = int(number) * scale if number is not None else None
        if all(number is None for number in result.values()):
            self._unsupported.add((key, "nvlink"))
            logger.debug("GPU %s: no NVLink field answered; not asked again", key)
            return {}
        return result

    def _nvlink_plan(self) -> tuple[list[Any], dict[int, tuple[str, int]]]:
        """The field-values request for ``NVLINK_FIELDS`` and its answers' names, built once."""
        if self._nvlink_request is None:
            request: list[Any] = []
            by_id: dict[int, tuple[str, int]] = {}
            for name, constant, scope, scale in NVLINK_FIELDS:
                field_id = getattr(self._module, constant, None)
                if field_id is not None:  # bindings older than the field: it is not asked
                    request.append((field_id, scope) if scope is not None else field_id)
                    by_id[field_id] = (name, scale)
            self._nvlink_request = (request, by_id)
        return self._nvlink_request

    def retired_pages(self, gpu: VisibleGpu) -> tuple[Optional[int], Optional[int], Optional[int]]:
        """``(single-bit, double-bit, pending)``: pages retired for ECC errors, and 1 when some wait
        for the next driver reload. Boards from Ampere on remap rows instead: ``None`` there."""
        if self.is_unsupported(gpu.device_key, "retired_pages_sbe"):
            return None, None, None  # the feature is absent (Ampere on, vGPU): one check, not three
        module = self._module
        counts: list[Optional[int]] = []
        for field, cause in (
            ("retired_pages_sbe", "NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS"),
            ("retired_pages_dbe", "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR"),
        ):
            pages = self.query(gpu.device_key, field, "nvmlDeviceGetRetiredPages", gpu.handle, getattr(module, cause))
            counts.append(len(pages) if pages is not None else None)
        pending = self.query(
            gpu.device_key, "retired_pages_pending", "nvmlDeviceGetRetiredPagesPendingStatus", gpu.handle
        )
        enabled = getattr(module, "NVML_FEATURE_ENABLED", 1)
        return counts[0], counts[1], (1 if pending == enabled else 0) if pending is not None else None

    def remapped_rows(self, gpu: VisibleGpu) -> tuple[Optional[int], Optional[int], Optional[int]]:
        """``(correctable, uncorrectable, failure)`` row remapping of one device (Ampere and later);
        ``failure`` is 1 when a remapping failed. ``None`` each where unsupported."""
        rows = self.query(gpu.device_key, "remapped_rows", "nvmlDeviceGetRemappedRows", gpu.handle)
        if not rows or len(rows) < 4:
            return None, None, None
        correctable, uncorrectable, _pending, failure = rows[:4]
        return int(correctable), int(uncorrectable), 1 if failure else 0

    def device_name(self, gpu: VisibleGpu) -> Optional[str]:
        """The model name of one device (``NVIDIA A100-SXM4-80GB``), or ``None``."""
        return self.query(gpu.device_key, "name", "nvmlDeviceGetName", gpu.handle)

    def pci_bus_id(self, gpu: VisibleGpu) -> Optional[str]:
        """The PCI bus id of one device's board (``00000000:07:00.0``), or ``None``."""
        # A MIG instance's PCI address is its parent board's.
        handle = gpu.parent_handle if gpu.is_mig_instance and gpu.parent_handle is not None else gpu.handle
        info = self.query(gpu.parent_uuid or gpu.device_key, "pci_info", "nvmlDeviceGetPciInfo", handle)
        bus_id = _as_text(getattr(info, "busId", None)) if info is not None else None
        return bus_id if isinstance(bus_id, str) else None


#: NVLink fields read with one nvmlDeviceGetFieldValues call: (our name, pynvml constant, scope
#: id or None, scale). Throughput fields take scope UINT_MAX for the sum over all links and count
#: KiB; the *_TOTAL error counters already sum the links.
_ALL_LINKS = 0xFFFFFFFF
NVLINK_FIELDS: tuple[tuple[str, str, Optional[int], int], ...] = (
    ("nvlink_tx_bytes", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX", _ALL_LINKS, 1024),
    ("nvlink_rx_bytes", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX", _ALL_LINKS, 1024),
    ("nvlink_crc_flit_errors", "NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", None, 1),
    ("nvlink_crc_data_errors", "NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", None, 1),
    ("nvlink_replay_errors", "NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", None, 1),
    ("nvlink_recovery_errors", "NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", None, 1),
)

# nvmlValueType_t -> the member of the nvmlValue_t union holding the value.
_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal"}


def _field_value(value: Any) -> Optional[float]:
    number = getattr(value.value, _VALUE_MEMBERS.get(value.valueType, "ullVal"), None)
    return number if isinstance(number, (int, float)) else None


# -- process-wide gateway for the process-tree collector -------------------------------------

_shared_lock = threading.Lock()
_shared_gateway: Optional[NvmlGateway] = None
_shared_failure: Optional[str] = None


def _shared() -> Optional[NvmlGateway]:
    global _shared_gateway, _shared_failure
    with _shared_lock:
        if _shared_gateway is None and _shared_failure is None:
            gateway = NvmlGateway()
            try:
                gateway.visible_gpus()
            except NvmlUnavailable as error:
                # Remembered: a host without NVML is not asked again every tick.
                _shared_failure = error.reason
                gateway.close()
                return None
            _shared_gateway = gateway
            atexit.register(gateway.close)
        return _shared_gateway


def _visible_through(gateway: Optional[NvmlGateway]) -> list[tuple[NvmlGateway, VisibleGpu]]:
    """Each visible GPU with the gateway to ask about it (``None``: the process-wide one); none without NVML."""
    if gateway is None:
        gateway = _shared()
        if gateway is None:
            return []
    try:
        return [(gateway, gpu) for gpu in gateway.visible_gpus()]
    except NvmlUnavailable:
        return []


def gpu_memory_by_pid(*, gateway: Optional[NvmlGateway] = None) -> dict[int, dict[int, int]]:
    """GPU memory used per process on the visible GPUs: ``{pid: {visible gpu index: used bytes}}``.

    Args:
        gateway: the NVML gateway to ask; ``None`` uses a process-wide one, opened on first use.

    Returns:
        The mapping; ``{}`` when NVML is unavailable or no process uses a visible GPU.
    """
    result: dict[int, dict[int, int]] = {}
    for asked, gpu in _visible_through(gateway):
        for pid, used_bytes in asked.running_process_memory(gpu).items():
            result.setdefault(pid, {})[gpu.visible_index] = used_bytes
    return result


def gpu_utilization_reader(*, gateway: Optional[NvmlGateway] = None) -> Callable[[], dict[int, dict[int, float]]]:
    """A reader of SM utilisation per process on the visible GPUs since its previous call.

    Each reader keeps its own window (the daemon's jobs each have one, so one job's reading does
    not consume another's samples).

    Args:
        gateway: the NVML gateway to ask; ``None`` uses the process-wide one (shared with
            :func:`gpu_memory_by_pid`).

    Returns:
        A function returning ``{pid: {visible gpu index: percent}}``; ``{}`` when NVML is
        unavailable or no process ran on a visible GPU since the previous call.
    """
    seen_us: dict[str, int] = {}

    def read() -> dict[int, dict[int, float]]:
        result: dict[int, dict[int, float]] = {}
        for asked, gpu in _visible_through(gateway):
            by_pid, seen_us[gpu.device_key] = asked.process_utilization(gpu, seen_us.get(gpu.device_key, 0))
            for pid, percent in by_pid.items():
                result.setdefault(pid, {})[gpu.visible_index] = percent
        return result

    return read
