"""Records: frozen dataclasses that carry what collectors found, with units in field names.

Records know nothing of Comet's camelCase payload keys or endpoints; the mapping to payloads
lives in one place, ``comet_agent/delivery/payloads.py``. Epoch milliseconds end in ``_ms``, byte
counts in ``_bytes``, percentages in ``_percent``.

The periodic records below are mapped to metric names in ``payloads``. A newer periodic record
can instead name its own metrics: it follows ``MetricRecord`` (a ``metric_pairs()`` method) and
lives in its collector's module, so adding a collector needs no edit here or in ``payloads``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence, Union

# ---------------------------------------------------------------------------------------------
# Static snapshots (collected once per run)
# ---------------------------------------------------------------------------------------------


#: The keys of a Comet system-details read (``get_system_details()``), in the order Comet documents
#: them; the collectors produce exactly these and the local server returns nothing else.
SYSTEM_DETAILS_KEYS = (
    "command",
    "env",
    "executable",
    "hostname",
    "ip",
    "machine",
    "os",
    "osRelease",
    "osType",
    "pid",
    "processor",
    "pythonVersion",
    "pythonVersionVerbose",
    "user",
    "installedPackages",
    "osPackages",
    "gpuStaticInfoList",
    "logAdditionalSystemInfoList",
    "networkInterfaceIps",
    "totalRam",
    "maxTotalMemory",
    "systemMetricNames",
)


@dataclass(frozen=True)
class HostSnapshot:
    """Facts about the host and the job's process, collected once per run.

    Feeds the host keys of Comet's system details (``hostname``, ``user``, ``os`` ...). Sizes are
    bytes; ``cpu_quota_cores`` is the cgroup CPU quota in CPUs (``1.5`` = 150 ms per 100 ms);
    ``None`` means unknown or unlimited, never a fake zero. ``command`` is already masked.
    """

    hostname: str
    user: str
    pid: int
    executable: Optional[str]
    command: tuple[str, ...]
    python_version: str
    python_version_verbose: str
    os_platform: str
    os_type: str
    os_release: str
    machine: str
    processor: str
    cpu_model: Optional[str]
    physical_cpu_count: Optional[int]
    logical_cpu_count: Optional[int]
    total_ram_bytes: Optional[int]
    distro_name: Optional[str]
    distro_version: Optional[str]
    distro_id: Optional[str]
    ip: Optional[str]
    network_interface_ips: tuple[str, ...]
    cgroup_version: Optional[int] = None
    cpu_quota_cores: Optional[float] = None
    memory_limit_bytes: Optional[int] = None
    # Slurm / Kubernetes / torchrun identity found in the job's environment: (key, value) pairs
    # such as ("slurm.job_id", "4242"), sorted by key.
    cluster_identity: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PythonPackage:
    """One installed distribution. ``url`` is the credential-stripped direct_url.json URL, if any."""

    name: str
    version: str
    editable: bool = False
    local: bool = False
    url: Optional[str] = None

    def requirement(self) -> str:
        """``name==version``, with `` (editable)`` or `` (local)`` appended when so installed."""
        text = f"{self.name}=={self.version}"
        if self.editable:
            return text + " (editable)"
        if self.local:
            return text + " (local)"
        return text


@dataclass(frozen=True)
class PythonPackagesSnapshot:
    """The packages the job's interpreter sees (Comet ``installedPackages``), sorted by name.

    ``source`` says where the list came from: ``"in-process"`` (our own interpreter) or
    ``"interpreter"`` (the watched job's interpreter, queried with a short script).
    """

    packages: tuple[PythonPackage, ...]
    source: str
    interpreter: Optional[str]
    python_version: Optional[str] = None
    python_version_verbose: Optional[str] = None
    truncated_count: int = 0

    def requirements(self) -> list[str]:
        """Sorted ``name==version`` strings, as Comet's ``installedPackages``."""
        return sorted(p.requirement() for p in self.packages)


@dataclass(frozen=True)
class OsPackagesSnapshot:
    """Installed OS packages as sorted ``name=version`` strings (Comet ``osPackages``).

    ``manager`` is ``"dpkg"``, ``"rpm"``, ``"apk"``, ``"pacman"`` or ``None`` when none was
    found, in which case ``packages`` is empty and ``reason`` says why.
    """

    manager: Optional[str]
    packages: tuple[str, ...]
    reason: Optional[str] = None
    truncated_count: int = 0


@dataclass(frozen=True)
class GitSnapshot:
    """Git metadata and the capped patch of the job's working directory.

    ``branch`` is the full ref (``refs/heads/main``), ``None`` on a detached HEAD; ``parent`` is
    the HEAD commit, ``None`` before the first commit; ``root`` is the oldest commit reachable
    from HEAD, ``None`` when it could not be found in time; ``origin`` has credentials stripped.
    ``patch`` is the diff of the working tree and index against HEAD (untracked files excluded),
    cut at ``max_patch_bytes`` with a trailing note when ``patch_truncated``; ``patch_total_bytes``
    is the size before the cut. ``notes`` state every omission (timeouts, policies).
    """

    working_dir: str
    user: Optional[str]
    root: Optional[str]
    branch: Optional[str]
    parent: Optional[str]
    origin: Optional[str]
    patch: Optional[bytes] = field(repr=False)  # up to megabytes: kept out of logs and reprs
    patch_total_bytes: Optional[int]
    patch_truncated: bool
    max_patch_bytes: int
    untracked_policy: str
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# Periodic samples (collected each tick)
# ---------------------------------------------------------------------------------------------


class MetricRecord(Protocol):
    """A periodic record that names its own metrics; ``payloads.metric_points`` takes it as is.

    ``metric_pairs()`` returns ``[(metric name, value)]`` in the order the points are emitted;
    a value of ``None`` (unsupported, or no rate yet) produces no point. Names are ``sys.``
    names listed in the metric catalogue (``comet_agent/catalogue.py``); a test checks that.
    ``taken_at_ms`` (epoch milliseconds) becomes every point's timestamp.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class FanSample:
        ...     speed_percent: Optional[float]
        ...     taken_at_ms: int
        ...     def metric_pairs(self):
        ...         return [("sys.fan.percent", self.speed_percent)]
        >>> FanSample(40.0, taken_at_ms=1000).metric_pairs()
        [('sys.fan.percent', 40.0)]
    """

    taken_at_ms: int

    def metric_pairs(self) -> Sequence[tuple[str, Optional[Union[int, float]]]]: ...


@dataclass(frozen=True)
class CpuSample:
    """CPU utilisation over the interval since the previous reading of ``/proc/stat``.

    ``per_cpu_percent[i]`` belongs to CPU number ``cpu_numbers[i]`` (ascending); CPUs whose
    counters went backwards, or that appeared or disappeared between the two readings, are left
    out. ``overall_percent`` is cgroup-aware: when a cgroup v2 ``cpu.max`` quota applies it is
    the cgroup's usage as a share of its quota (``overall_source == "cgroup"``), otherwise the
    host-wide figure (``"host"``). ``host_overall_percent`` is always the host-wide figure.
    """

    per_cpu_percent: tuple[float, ...]
    cpu_numbers: tuple[int, ...]
    overall_percent: Optional[float]
    overall_source: str
    host_overall_percent: Optional[float]
    cgroup_quota_cpus: Optional[float]
    taken_at_ms: int


@dataclass(frozen=True)
class MemorySample:
    """Memory from ``/proc/meminfo``; ``used_bytes`` is total minus available, as Comet computes it."""

    total_bytes: int
    available_bytes: int
    used_bytes: int
    used_percent: float
    swap_total_bytes: int
    swap_used_bytes: int
    swap_used_percent: Optional[float]
    taken_at_ms: int


@dataclass(frozen=True)
class LoadSample:
    """Load averages from ``/proc/loadavg`` (runnable plus uninterruptible tasks)."""

    load_1m: float
    load_5m: float
    load_15m: float
    taken_at_ms: int


@dataclass(frozen=True)
class DiskIoSample:
    """Bytes per second read from and written to whole disks since the previous reading."""

    read_bytes_per_s: float
    write_bytes_per_s: float
    taken_at_ms: int


@dataclass(frozen=True)
class DiskUsageSample:
    """Usage of the filesystem holding ``path``; ``role`` is ``"root"`` (``/``) or ``"job"``.

    ``used_percent`` follows ``df`` and psutil: used / (used + available to unprivileged users).
    """

    role: str
    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    used_percent: float
    taken_at_ms: int


@dataclass(frozen=True)
class NetworkSample:
    """Bytes per second sent and received on all interfaces except loopback."""

    sent_bytes_per_s: float
    received_bytes_per_s: float
    taken_at_ms: int


@dataclass(frozen=True)
class ProcessTreeSample:
    """The watched process and all its descendants, summed.

    ``cpu_percent`` is ``None`` on the first reading (a rate needs two) and can exceed 100 on
    several CPUs. ``open_files`` is ``None`` when a descriptor table could not be read (another
    user's process). ``gpu_memory_used_bytes_by_index`` maps a visible GPU index to the memory
    the tree's processes hold on it; empty when NVML is unavailable or no process uses a GPU.
    ``gpu_utilization_percent_by_index`` maps it to the SM utilisation of the tree's processes
    there (NVML's per-process samples since the previous reading, summed over the tree).
    """

    root_pid: int
    process_count: int
    cpu_percent: Optional[float]
    rss_bytes: int
    threads: int
    open_files: Optional[int]
    taken_at_ms: int
    gpu_memory_used_bytes_by_index: dict[int, int] = field(default_factory=dict)
    gpu_utilization_percent_by_index: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentSelfSample:
    """The agent's own cost: CPU percent (``None`` on the first reading) and resident memory
    (``None`` in-process, where the agent shares the training job's memory)."""

    pid: int
    cpu_percent: Optional[float]
    rss_bytes: Optional[int]
    taken_at_ms: int


# ---------------------------------------------------------------------------------------------
# GPU (static device facts once per run; one sample per visible device each tick)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuDeviceInfo:
    """Static facts about one visible GPU (or MIG instance), read once through NVML.

    ``gpu_index`` is the position in the visible device list (after ``CUDA_VISIBLE_DEVICES``), as
    comet_ml reports it; ``nvml_index`` is the physical NVML index of the board (of the parent
    board for a MIG instance). Fields NVML cannot answer on this device are ``None``.
    """

    gpu_index: int
    name: Optional[str]
    uuid: Optional[str]
    memory_total_bytes: Optional[int]
    power_limit_milliwatts: Optional[int]
    nvml_index: Optional[int] = None
    pci_bus_id: Optional[str] = None
    mig_mode_enabled: Optional[bool] = None
    is_mig_instance: bool = False
    parent_uuid: Optional[str] = None
    mig_instance_uuids: tuple[str, ...] = ()


@dataclass(frozen=True)
class GpuStaticSnapshot:
    """What ``GpuStaticCollector.collect()`` returns: the visible devices and driver facts.

    ``additional`` is a tuple of ``{"key", "value"}`` items for Comet's additional system info
    (driver and CUDA driver version, PCI bus ids, MIG mode and instances, device selection).
    """

    devices: tuple[GpuDeviceInfo, ...]
    driver_version: Optional[str]
    cuda_driver_version: Optional[str]
    additional: tuple[dict, ...] = ()


@dataclass(frozen=True)
class GpuSample:
    """One reading of one visible GPU. ``None`` means NVML does not support (or failed) that field.

    ``throttle_reasons`` is NVML's clocks-event bitmask (0: not throttled); ECC counters are
    volatile (since the last driver load) totals; power is in milliwatts as NVML reports it.
    PCIe throughput is NVML's own 20 ms measurement; NVLink byte and error counts are totals over
    all links since the driver loaded (``None`` on a board without NVLink); retired pages exist
    before Ampere, remapped rows from Ampere on (each ``None`` where the other applies);
    ``retired_pages_pending`` and ``row_remap_failure`` are 0 or 1. ``name`` (the model),
    ``nvml_index`` (the physical board's NVML index, as dcgm-exporter's ``gpu`` label counts),
    ``pci_bus_id`` and ``driver_version`` label the sample; they are read once, not every tick.
    """

    gpu_index: int
    taken_at_ms: int
    uuid: Optional[str] = None
    utilization_percent: Optional[float] = None
    memory_used_bytes: Optional[int] = None
    memory_free_bytes: Optional[int] = None
    memory_total_bytes: Optional[int] = None
    memory_utilization_percent: Optional[float] = None
    temperature_celsius: Optional[float] = None
    power_usage_milliwatts: Optional[int] = None
    power_limit_milliwatts: Optional[int] = None
    clock_sm_mhz: Optional[int] = None
    clock_memory_mhz: Optional[int] = None
    fan_speed_percent: Optional[float] = None
    throttle_reasons: Optional[int] = None
    ecc_errors_corrected: Optional[int] = None
    ecc_errors_uncorrected: Optional[int] = None
    pcie_tx_bytes_per_s: Optional[int] = None
    pcie_rx_bytes_per_s: Optional[int] = None
    nvlink_tx_bytes: Optional[int] = None
    nvlink_rx_bytes: Optional[int] = None
    nvlink_crc_flit_errors: Optional[int] = None
    nvlink_crc_data_errors: Optional[int] = None
    nvlink_replay_errors: Optional[int] = None
    nvlink_recovery_errors: Optional[int] = None
    retired_pages_sbe: Optional[int] = None
    retired_pages_dbe: Optional[int] = None
    retired_pages_pending: Optional[int] = None
    remapped_rows_correctable: Optional[int] = None
    remapped_rows_uncorrectable: Optional[int] = None
    row_remap_failure: Optional[int] = None
    name: Optional[str] = None
    nvml_index: Optional[int] = None
    pci_bus_id: Optional[str] = None
    driver_version: Optional[str] = None
