"""GPU periodic readings: one :class:`GpuSample` per visible NVIDIA GPU each tick, through NVML.

Reads memory (v2 API where the driver has it), utilization, temperature, power usage and limit, SM
and memory clocks, fan speed, clocks-event (throttle) reasons, volatile ECC counts, PCIe
throughput, NVLink byte and error totals (one field-values call), retired pages (before Ampere) and
remapped rows (Ampere on). The XID of the last error is not read: NVML gives it only through an
event set (``nvmlEventSetCreate`` and a waiting thread per device), not as a field a tick can ask
for, so it stays with the ops tools (dcgm-exporter's ``DCGM_FI_DEV_XID_ERRORS``). The samples
feed Comet's ``sys.gpu.<i>.*`` metrics (and ``log_gpu_metrics`` items with the per-kind
endpoints option; mapped in ``comet_agent/delivery/payloads.py``); ``<i>`` is the position in the visible list
(``CUDA_VISIBLE_DEVICES`` honoured), as comet_ml reports it, and the UUID identifies the board.

When NVML is unusable or no device is visible, the constructor raises ``Unavailable`` with the
reason. A field a device does not support (fan on a datacenter board, utilization of a MIG
instance) is ``None``: asked once, logged once at DEBUG, then no longer asked, so unsupported fields
cost nothing per tick. An unexpected NVML error on one query makes that field ``None`` for that
tick only (logged once at INFO); the other fields and devices are unaffected.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional, Sequence

from comet_agent.collectors import Unavailable
from comet_agent.records import GpuSample
from comet_agent.sources.nvml import NvmlGateway, NvmlUnavailable, VisibleGpu

logger = logging.getLogger(__name__)

# One row per scalar reading: (GpuSample field, NVML function, extra arguments from the module,
# conversion). Adding a reading is one row (nvitop's DEVICE_METRICS). The nvidia-smi equivalent is
# given so a number can be checked by hand.
_SCALAR_READINGS: tuple[tuple[str, str, Callable[[Any], tuple], Callable[[Any], Any]], ...] = (
    # nvidia-smi --query-gpu=temperature.gpu
    ("temperature_celsius", "nvmlDeviceGetTemperature", lambda m: (m.NVML_TEMPERATURE_GPU,), float),
    # nvidia-smi --query-gpu=power.draw (NVML reports milliwatts)
    ("power_usage_milliwatts", "nvmlDeviceGetPowerUsage", lambda m: (), int),
    # nvidia-smi --query-gpu=enforced.power.limit
    ("power_limit_milliwatts", "nvmlDeviceGetEnforcedPowerLimit", lambda m: (), int),
    # nvidia-smi --query-gpu=clocks.sm
    ("clock_sm_mhz", "nvmlDeviceGetClockInfo", lambda m: (m.NVML_CLOCK_SM,), int),
    # nvidia-smi --query-gpu=clocks.mem
    ("clock_memory_mhz", "nvmlDeviceGetClockInfo", lambda m: (m.NVML_CLOCK_MEM,), int),
    # nvidia-smi --query-gpu=fan.speed
    ("fan_speed_percent", "nvmlDeviceGetFanSpeed", lambda m: (), float),
    # nvidia-smi --query-gpu=ecc.errors.corrected.volatile.total
    (
        "ecc_errors_corrected",
        "nvmlDeviceGetTotalEccErrors",
        lambda m: (m.NVML_MEMORY_ERROR_TYPE_CORRECTED, m.NVML_VOLATILE_ECC),
        int,
    ),
    # nvidia-smi --query-gpu=ecc.errors.uncorrected.volatile.total
    (
        "ecc_errors_uncorrected",
        "nvmlDeviceGetTotalEccErrors",
        lambda m: (m.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, m.NVML_VOLATILE_ECC),
        int,
    ),
)


class GpuCollector:
    """Periodic GPU collector (name ``"gpu"``, cadence ``"gpu"``).

    Args:
        nvml_module: a pynvml-shaped module (tests pass a fake); ``None`` imports the real one.
        environ: environment for ``CUDA_VISIBLE_DEVICES`` / ``NVIDIA_VISIBLE_DEVICES``
            (``None``: ``os.environ``).
        gateway: an already built gateway to share (it is then not closed by :meth:`close`).

    Raises:
        Unavailable: NVML cannot be used, or no device is visible (the reason says which).

    Example:
        >>> collector = GpuCollector()
        >>> samples = collector.sample(now_ms=1_700_000_000_000)
        >>> collector.close()
    """

    name = "gpu"
    cadence = "gpu"

    def __init__(
        self,
        *,
        nvml_module: Any = None,
        environ: Optional[Mapping[str, str]] = None,
        gateway: Optional[NvmlGateway] = None,
    ):
        self._owns_gateway = gateway is None
        self._gateway = gateway if gateway is not None else NvmlGateway(module=nvml_module, environ=environ)
        try:
            # Devices are enumerated once: re-enumerating every tick is what made other monitors
            # expensive (wandb#8359), and the visible set of a running job does not change.
            self._visible = self._gateway.visible_gpus()
        except NvmlUnavailable as error:
            if self._owns_gateway:
                self._gateway.close()
            raise Unavailable(error.reason) from None
        module = self._gateway.module
        # The model name labels the samples (dcgm-exporter's modelName); it never changes.
        self._names = [self._gateway.device_name(gpu) for gpu in self._visible]
        self._bus_ids = [self._gateway.pci_bus_id(gpu) for gpu in self._visible]
        self._driver_version = self._gateway.driver_version()
        # Arguments are built once per device, not every tick.
        self._readings = [
            [
                (field, function_name, (gpu.handle, *extra_args(module)), convert)
                for field, function_name, extra_args, convert in _SCALAR_READINGS
            ]
            for gpu in self._visible
        ]

    @property
    def visible_gpus(self) -> Sequence[VisibleGpu]:
        """The devices sampled, in visible order."""
        return tuple(self._visible)

    def sample(self, now_ms: int) -> list[GpuSample]:
        """Read every visible device once.

        Args:
            now_ms: wall-clock epoch milliseconds stamped on the samples.

        Returns:
            One :class:`GpuSample` per visible device, in visible order.
        """
        return [self._sample_device(gpu, now_ms) for gpu in self._visible]

    def _sample_device(self, gpu: VisibleGpu, now_ms: int) -> GpuSample:
        gateway = self._gateway
        key = gpu.device_key
        values: dict[str, Any] = {}
        memory = gateway.memory_info(gpu)
        if memory is not None:
            values["memory_total_bytes"], values["memory_free_bytes"], values["memory_used_bytes"] = memory
        # nvidia-smi --query-gpu=utilization.gpu,utilization.memory (one call answers both)
        rates = gateway.query(key, "utilization", "nvmlDeviceGetUtilizationRates", gpu.handle)
        if rates is not None:
            values["utilization_percent"] = float(rates.gpu)
            values["memory_utilization_percent"] = float(rates.memory)
        for field, function_name, call_args, convert in self._readings[gpu.visible_index]:
            value = gateway.query(key, field, function_name, *call_args)
            if value is not None:
                values[field] = convert(value)
        values["throttle_reasons"] = _throttle_reasons(gateway, gpu)
        values["pcie_tx_bytes_per_s"], values["pcie_rx_bytes_per_s"] = gateway.pcie_throughput(gpu)
        values.update(gateway.nvlink_counters(gpu))
        values["retired_pages_sbe"], values["retired_pages_dbe"], values["retired_pages_pending"] = (
            gateway.retired_pages(gpu)
        )
        (
            values["remapped_rows_correctable"],
            values["remapped_rows_uncorrectable"],
            values["row_remap_failure"],
        ) = gateway.remapped_rows(gpu)
        return GpuSample(
            gpu_index=gpu.visible_index,
            taken_at_ms=now_ms,
            uuid=gpu.uuid,
            name=self._names[gpu.visible_index],
            nvml_index=gpu.nvml_index,
            pci_bus_id=self._bus_ids[gpu.visible_index],
            driver_version=self._driver_version,
            **values,
        )

    def close(self) -> None:
        """Release NVML if this collector opened it; safe to call more than once."""
        if self._owns_gateway:
            self._gateway.close()


def _throttle_reasons(gateway: NvmlGateway, gpu: VisibleGpu) -> Optional[int]:
    """nvidia-smi --query-gpu=clocks_event_reasons.active: the newer name first, the older as fallback."""
    key = gpu.device_key
    if not gateway.is_unsupported(key, "clocks_event_reasons"):
        reasons = gateway.query(key, "clocks_event_reasons", "nvmlDeviceGetCurrentClocksEventReasons", gpu.handle)
        if reasons is not None or not gateway.is_unsupported(key, "clocks_event_reasons"):
            return reasons
    return gateway.query(key, "throttle_reasons", "nvmlDeviceGetCurrentClocksThrottleReasons", gpu.handle)
