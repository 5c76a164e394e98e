"""GPU static info: name, UUID, memory and power limit of each visible NVIDIA GPU, once per run.

Reads NVML through :class:`comet_agent.sources.nvml.NvmlGateway`. Feeds Comet's
``gpuStaticInfoList`` (``set_gpu_static_info``: items ``{gpuIndex, name, uuid, totalMemory,
powerLimit}``, built by :func:`gpu_static_info_payload`) and, through the snapshot's
``additional`` items, ``logAdditionalSystemInfoList``: driver and CUDA driver version, PCI bus id,
MIG mode and instances, and how the visible devices were chosen.

When there is no pynvml, no driver, no device, or ``CUDA_VISIBLE_DEVICES`` hides them all,
:meth:`GpuStaticCollector.collect` raises ``Unavailable`` with that reason; nothing else is
affected. A field a device does not support is ``None``.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from comet_agent.collectors import Unavailable
from comet_agent.records import GpuDeviceInfo, GpuStaticSnapshot
from comet_agent.sources.nvml import NvmlGateway, NvmlUnavailable, VisibleGpu

logger = logging.getLogger(__name__)


class GpuStaticCollector:
    """Collects :class:`GpuStaticSnapshot` once.

    Args:
        nvml_module: a pynvml-shaped module (tests pass a fake); ``None`` imports the real one.
        environ: environment for ``CUDA_VISIBLE_DEVICES`` / ``NVIDIA_VISIBLE_DEVICES``
            (``None``: ``os.environ``).
        gateway: an already built gateway to share (it is then not closed here).

    Example:
        >>> try:
        ...     snapshot = GpuStaticCollector().collect()
        ... except Unavailable as error:
        ...     print("no GPU info:", error.reason)
    """

    name = "gpu_static"

    def __init__(
        self,
        *,
        nvml_module: Any = None,
        environ: Optional[Mapping[str, str]] = None,
        gateway: Optional[NvmlGateway] = None,
    ):
        self._owns_gateway = gateway is None
        self._gateway = gateway if gateway is not None else NvmlGateway(module=nvml_module, environ=environ)

    def collect(self) -> GpuStaticSnapshot:
        """Read the static facts of every visible device.

        Returns:
            The snapshot; ``devices`` in visible order.

        Raises:
            Unavailable: NVML cannot be used, or no device is visible (the reason says which).
        """
        gateway = self._gateway
        try:
            visible = gateway.visible_gpus()
            driver_version = gateway.driver_version()
            cuda_driver_version = gateway.cuda_driver_version()
            devices = tuple(self._device_info(gpu) for gpu in visible)
        except NvmlUnavailable as error:
            raise Unavailable(error.reason) from None
        finally:
            if self._owns_gateway:
                gateway.close()
        return GpuStaticSnapshot(
            devices=devices,
            driver_version=driver_version,
            cuda_driver_version=cuda_driver_version,
            additional=tuple(_additional_items(devices, driver_version, cuda_driver_version, gateway.selection_note)),
        )

    def _device_info(self, gpu: VisibleGpu) -> GpuDeviceInfo:
        gateway = self._gateway
        key = gpu.device_key
        memory = gateway.memory_info(gpu)
        mig_mode_enabled: Optional[bool] = None
        mig_uuids: tuple[str, ...] = ()
        if not gpu.is_mig_instance:
            mode = gateway.query(key, "mig_mode", "nvmlDeviceGetMigMode", gpu.handle)
            if mode:
                mig_mode_enabled = mode[0] == getattr(gateway.module, "NVML_DEVICE_MIG_ENABLE", 1)
            if mig_mode_enabled:
                mig_uuids = tuple(uuid for _slot, _handle, uuid in gateway.mig_instances(gpu.handle, key))
        return GpuDeviceInfo(
            gpu_index=gpu.visible_index,
            name=gateway.device_name(gpu),
            uuid=gpu.uuid,
            memory_total_bytes=memory[0] if memory else None,
            power_limit_milliwatts=_power_limit_milliwatts(gateway, gpu),
            nvml_index=gpu.nvml_index,
            pci_bus_id=gateway.pci_bus_id(gpu),  # a MIG instance's is its parent board's
            mig_mode_enabled=mig_mode_enabled,
            is_mig_instance=gpu.is_mig_instance,
            parent_uuid=gpu.parent_uuid,
            mig_instance_uuids=mig_uuids,
        )


def _power_limit_milliwatts(gateway: NvmlGateway, gpu: VisibleGpu) -> Optional[int]:
    """The enforced limit (what the board obeys), else the management limit (what is configured)."""
    limit = gateway.query(gpu.device_key, "power_limit_enforced", "nvmlDeviceGetEnforcedPowerLimit", gpu.handle)
    if limit is None:
        limit = gateway.query(gpu.device_key, "power_limit_management", "nvmlDeviceGetPowerManagementLimit", gpu.handle)
    return int(limit) if limit is not None else None


def _additional_items(
    devices: tuple[GpuDeviceInfo, ...],
    driver_version: Optional[str],
    cuda_driver_version: Optional[str],
    selection_note: Optional[str],
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {"key": "gpu.driverVersion", "value": driver_version},
        {"key": "gpu.cudaDriverVersion", "value": cuda_driver_version},
        {"key": "gpu.visibleDevices", "value": selection_note},
    ]
    for device in devices:
        prefix = f"gpu.{device.gpu_index}"
        items.append({"key": f"{prefix}.nvmlIndex", "value": device.nvml_index})
        items.append({"key": f"{prefix}.pciBusId", "value": device.pci_bus_id})
        if device.is_mig_instance:
            items.append({"key": f"{prefix}.migParentUuid", "value": device.parent_uuid})
        else:
            mode = None if device.mig_mode_enabled is None else ("enabled" if device.mig_mode_enabled else "disabled")
            items.append({"key": f"{prefix}.migMode", "value": mode})
            if device.mig_instance_uuids:
                items.append({"key": f"{prefix}.migInstances", "value": ",".join(device.mig_instance_uuids)})
    # Unknown facts are left out rather than sent as null values.
    return [item for item in items if item["value"] is not None]


def gpu_static_info_payload(snapshot: GpuStaticSnapshot) -> list[dict]:
    """Map a snapshot to Comet's ``gpuStaticInfoList`` items (``APIExperiment.set_gpu_static_info``).

    Args:
        snapshot: from :meth:`GpuStaticCollector.collect`.

    Returns:
        One ``{gpuIndex, name, uuid, totalMemory (bytes), powerLimit (mW)}`` item per device, in
        visible order; unknown values are ``None``.
    """
    return [
        {
            "gpuIndex": device.gpu_index,
            "name": device.name,
            "uuid": device.uuid,
            "totalMemory": device.memory_total_bytes,
            "powerLimit": device.power_limit_milliwatts,
        }
        for device in snapshot.devices
    ]
