"""The metric catalogue: every series comet-agent emits, with its unit, kind and window rule.

One table (``CATALOGUE``) says, for each metric name pattern, what the series is: its unit, its
kind (gauge, counter or rate), how a push window aggregates it, which collector produces it, and
whether the name is Comet's own or our extension. The payload mapping (``delivery/payloads.py``)
reads window rules and indices from here; what readers (pages, ``show``, an exporter) need about
a name, its unit and its sort order, is here too. ``docs/metrics.md`` is generated from here
(``python -m comet_agent.catalogue --markdown``), and a test fails when the checked-in file
differs.

Name patterns are literal names with at most one placeholder:

- ``<i>``: a GPU's position in the visible device list (``CUDA_VISIBLE_DEVICES`` honoured), as in
  Comet: ``0``, ``1``, ... ``15``, no leading zeros;
- ``<NN>``: a CPU's kernel number plus one, at least two digits, as in Comet:
  ``01`` ... ``99``, ``100``, ``101``, ...

Lookups (``entry_for``, ``unit_for``, ``window_rule``, ``index_of``) run on every pushed point:
patterns are compiled once at import, exact names are a dict lookup, and each name's answer is
cached (bounded, so arbitrary user metric names cannot grow it without limit).

This module sits at the bottom layer: it imports nothing from comet_agent.

Example:
    >>> entry_for("sys.gpu.12.power_usage").unit
    'mW'
    >>> window_rule("sys.ram.used")
    <Window.MAX: 'max'>
    >>> index_of("sys.cpu.percent.128")
    128
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
import sys
from dataclasses import dataclass, field
from typing import Optional, Sequence

__all__ = [
    "CATALOGUE",
    "CatalogueEntry",
    "Export",
    "Kind",
    "Origin",
    "Window",
    "entry_for",
    "index_of",
    "render_markdown",
    "sort_key",
    "unit_for",
    "window_rule",
]

# Units, as written in the catalogue and in docs/metrics.md.
PERCENT = "percent"
BYTES = "bytes"
BYTES_PER_S = "bytes/s"
MILLIWATTS = "mW"
MEGAHERTZ = "MHz"
CELSIUS = "°C"
COUNT = "count"
TASKS = "tasks"  # load average: runnable plus uninterruptible tasks
BITMASK = "bitmask"


class Kind(str, enum.Enum):
    """What a series' values are.

    ``GAUGE``: a level read at the sample time (memory in use, temperature). ``COUNTER``: a running
    total that only grows until its source resets (ECC errors since the driver loaded). ``RATE``:
    an average over the interval between two readings of a kernel counter (bytes per second, the
    share of CPU time busy); the first sample of a run has none.
    """

    GAUGE = "gauge"
    COUNTER = "counter"
    RATE = "rate"


class Window(str, enum.Enum):
    """How the samples of one push window become the one value the push carries.

    ``MEAN`` for utilisations, rates, temperatures, power, load and clocks; ``MAX`` for memory and
    counts in use (an OOM risk is a peak, not a mean); ``MIN`` for memory free; ``LAST`` for
    totals, limits and counters; ``OR`` for bitmasks, so no event in the window is lost.
    """

    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    LAST = "last"
    OR = "or"


class Origin(str, enum.Enum):
    """Whose name a series carries: ``COMET`` (the official SDK logs it too) or ``OURS``."""

    COMET = "comet"
    OURS = "ours"


# Placeholder -> the regular expression its text must match. One capture group: the index.
_PLACEHOLDERS = {
    "<i>": r"(0|[1-9][0-9]*)",
    "<NN>": r"(0[1-9]|[1-9][0-9]+)",
}
_PLACEHOLDER_SPLIT = re.compile("(" + "|".join(re.escape(p) for p in _PLACEHOLDERS) + ")")


@dataclass(frozen=True)
class Export:
    """How a catalogue row is served on a Prometheus ``/metrics`` page (``engine/prometheus.py``).

    Attributes:
        name: the Prometheus metric name, written on the page exactly so (a counter's name is not
            suffixed again: dcgm-exporter's counters carry no ``_total``).
        type: ``"gauge"`` or ``"counter"``, as the ``# TYPE`` line says.
        scale: the catalogue value times this is the exported value (``0.001``: mW to W).
        unit: the exported unit, for the docs (``W``, ``MiB``).
    """

    name: str
    type: str
    scale: float = 1.0
    unit: str = ""


@dataclass(frozen=True)
class CatalogueEntry:
    """One row of the catalogue: a metric name pattern and what its series are.

    Attributes:
        pattern: the name, with at most one placeholder (``<i>`` or ``<NN>``; see the module).
        unit: ``percent``, ``bytes``, ``bytes/s``, ``mW``, ``MHz``, ``°C``, ``count``, ``tasks``
            or ``bitmask``.
        kind: gauge, counter or rate (``Kind``).
        window: how a push window aggregates it (``Window``).
        description: one or two sentences for people reading charts and docs.
        source: the ``name`` of the periodic collector that produces it (``cpu``, ``memory``,
            ``load``, ``disk``, ``network``, ``pressure``, ``process``, ``agent_self``, ``gpu``).
        origin: Comet's own name or ours (``Origin``).
        integer: values are whole numbers on the wire (bytes, milliwatts, counts); a window's
            mean is rounded so the pushed value stays one.
        prometheus: our own Prometheus name for the series (``Export``), or ``None`` where the
            row repeats another under a Comet name (``sys.compute.overall``).
        dcgm: the name, type and unit NVIDIA's dcgm-exporter gives the same reading, when it has
            one: the series is served under that name too, so dcgm-exporter's dashboards work.
    """

    pattern: str
    unit: str
    kind: Kind
    window: Window
    description: str
    source: str
    origin: Origin
    integer: bool = False
    prometheus: Optional[Export] = None
    dcgm: Optional[Export] = None
    _placeholder: Optional[str] = field(default=None, init=False, repr=False, compare=False)
    _regex: Optional[re.Pattern] = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = _PLACEHOLDER_SPLIT.split(self.pattern)
        placeholders = parts[1::2]
        if len(placeholders) > 1:
            raise ValueError(f"catalogue pattern {self.pattern!r} has more than one placeholder")
        if placeholders:
            body = "".join(_PLACEHOLDERS[part] if index % 2 else re.escape(part) for index, part in enumerate(parts))
            object.__setattr__(self, "_placeholder", placeholders[0])
            object.__setattr__(self, "_regex", re.compile(body))

    @property
    def placeholder(self) -> Optional[str]:
        """``"<i>"``, ``"<NN>"``, or ``None`` for a literal name."""
        return self._placeholder

    def name(self, index: Optional[int] = None) -> str:
        """The metric name of this row for ``index`` (the number the placeholder holds).

        Args:
            index: the GPU index for ``<i>``, the CPU number plus one for ``<NN>``; ``None`` for
                a literal name.

        Raises:
            ValueError: an index for a literal name, none for a pattern, or one out of range.

        Example:
            >>> entry_for("sys.cpu.percent.01").name(7)
            'sys.cpu.percent.07'
        """
        placeholder = self.placeholder
        if placeholder is None:
            if index is not None:
                raise ValueError(f"{self.pattern} takes no index")
            return self.pattern
        if index is None or index < (1 if placeholder == "<NN>" else 0):
            raise ValueError(f"{self.pattern} needs an index >= {1 if placeholder == '<NN>' else 0}, not {index!r}")
        text = f"{index:02d}" if placeholder == "<NN>" else str(index)
        return self.pattern.replace(placeholder, text)


def _row(
    pattern: str,
    unit: str,
    kind: Kind,
    window: Window,
    source: str,
    origin: Origin,
    description: str,
    *,
    integer: bool = False,
) -> CatalogueEntry:
    return CatalogueEntry(
        pattern=pattern,
        unit=unit,
        kind=kind,
        window=window,
        description=description,
        source=source,
        origin=origin,
        integer=integer,
    )


_G, _C, _R = Kind.GAUGE, Kind.COUNTER, Kind.RATE
_MEAN, _MAX, _MIN, _LAST, _OR = Window.MEAN, Window.MAX, Window.MIN, Window.LAST, Window.OR
_COMET, _OURS = Origin.COMET, Origin.OURS

#: Every series comet-agent emits, grouped by collector, in display order.
CATALOGUE: tuple[CatalogueEntry, ...] = (
    # -- cpu ------------------------------------------------------------------------------------
    _row(
        "sys.cpu.percent.avg",
        PERCENT,
        _R,
        _MEAN,
        "cpu",
        _COMET,
        "Host-wide CPU utilisation over the interval, all CPUs together. With the per-kind endpoints "
        "option the per-CPU figures travel through log_cpu_metrics and the server derives it as their mean.",
    ),
    _row(
        "sys.compute.overall",
        PERCENT,
        _R,
        _MEAN,
        "cpu",
        _COMET,
        "The host-wide CPU utilisation rounded to one decimal, under the name Comet's compute panels "
        "read (comet_ml logs it beside sys.cpu.percent.avg).",
    ),
    _row(
        "sys.cpu.percent.<NN>",
        PERCENT,
        _R,
        _MEAN,
        "cpu",
        _COMET,
        "Utilisation of one CPU over the interval; NN is the kernel's CPU number plus one. A CPU "
        "that went offline, came online or whose counters went backwards has no point for that "
        "interval. Comet logs these only with COMET_AUTO_LOG_ENV_CPU_PER_CORE; we always do.",
    ),
    _row(
        "sys.cpu.cgroup.percent.avg",
        PERCENT,
        _R,
        _MEAN,
        "cpu",
        _OURS,
        "The job's CPU use as a share of its cgroup v2 quota (cpu.max), capped at 100; only when "
        "a quota applies. A container limited to 2 CPUs that uses both reads 100.",
    ),
    # -- memory ---------------------------------------------------------------------------------
    _row("sys.ram.total", BYTES, _G, _LAST, "memory", _COMET, "Physical memory (MemTotal).", integer=True),
    _row(
        "sys.ram.used",
        BYTES,
        _G,
        _MAX,
        "memory",
        _COMET,
        "Memory in use: total minus available, as Comet computes it.",
        integer=True,
    ),
    _row(
        "sys.ram.available",
        BYTES,
        _G,
        _MIN,
        "memory",
        _COMET,
        "Memory available to new work without swapping (MemAvailable).",
        integer=True,
    ),
    _row("sys.ram.percent.used", PERCENT, _G, _MAX, "memory", _COMET, "sys.ram.used as a share of sys.ram.total."),
    _row(
        "sys.swap.total",
        BYTES,
        _G,
        _LAST,
        "memory",
        _OURS,
        "Swap space; no swap series on a host without swap.",
        integer=True,
    ),
    _row("sys.swap.used", BYTES, _G, _MAX, "memory", _OURS, "Swap in use.", integer=True),
    _row("sys.swap.percent.used", PERCENT, _G, _MAX, "memory", _OURS, "sys.swap.used as a share of sys.swap.total."),
    # -- load -----------------------------------------------------------------------------------
    _row(
        "sys.load.avg",
        TASKS,
        _G,
        _MEAN,
        "load",
        _COMET,
        "1-minute load average: runnable plus uninterruptible tasks (/proc/loadavg).",
    ),
    _row("sys.load.avg5", TASKS, _G, _MEAN, "load", _OURS, "5-minute load average."),
    _row("sys.load.avg15", TASKS, _G, _MEAN, "load", _OURS, "15-minute load average."),
    # -- disk -----------------------------------------------------------------------------------
    _row(
        "sys.disk.read_bps",
        BYTES_PER_S,
        _R,
        _MEAN,
        "disk",
        _COMET,
        "Bytes read per second from physical whole disks (partitions, LVM, RAID and loop devices "
        "are counted once, on the disk beneath).",
        integer=True,
    ),
    _row(
        "sys.disk.write_bps",
        BYTES_PER_S,
        _R,
        _MEAN,
        "disk",
        _COMET,
        "Bytes written per second to physical whole disks.",
        integer=True,
    ),
    _row(
        "sys.disk.root.used", BYTES, _G, _MAX, "disk", _COMET, "Space used on the filesystem holding /.", integer=True
    ),
    _row(
        "sys.disk.root.percent.used",
        PERCENT,
        _G,
        _MAX,
        "disk",
        _COMET,
        "Used share of the filesystem holding /, as df shows it (blocks reserved for root do not count as free).",
    ),
    _row(
        "sys.disk.job.used",
        BYTES,
        _G,
        _MAX,
        "disk",
        _OURS,
        "Space used on the filesystem holding the job's working directory.",
        integer=True,
    ),
    _row(
        "sys.disk.job.percent.used",
        PERCENT,
        _G,
        _MAX,
        "disk",
        _OURS,
        "Used share of the filesystem holding the job's working directory, as df shows it.",
    ),
    # -- network --------------------------------------------------------------------------------
    _row(
        "sys.network.send_bps",
        BYTES_PER_S,
        _R,
        _MEAN,
        "network",
        _COMET,
        "Bytes sent per second on every interface except loopback.",
        integer=True,
    ),
    _row(
        "sys.network.receive_bps",
        BYTES_PER_S,
        _R,
        _MEAN,
        "network",
        _COMET,
        "Bytes received per second on every interface except loopback.",
        integer=True,
    ),
    # -- pressure (Linux pressure stall information) ---------------------------------------------
    _row(
        "sys.pressure.cpu.some.percent",
        PERCENT,
        _R,
        _MEAN,
        "pressure",
        _OURS,
        "Share of the interval in which at least one runnable task waited for a CPU (/proc/pressure/cpu, "
        "from its stall-time total). Host-wide, also inside a container.",
    ),
    _row(
        "sys.pressure.memory.some.percent",
        PERCENT,
        _R,
        _MEAN,
        "pressure",
        _OURS,
        "Share of the interval in which at least one task was stalled on memory (reclaim, swap-in, "
        "refaulting page cache).",
    ),
    _row(
        "sys.pressure.memory.full.percent",
        PERCENT,
        _R,
        _MEAN,
        "pressure",
        _OURS,
        "Share of the interval in which every non-idle task was stalled on memory at once: thrashing.",
    ),
    _row(
        "sys.pressure.io.some.percent",
        PERCENT,
        _R,
        _MEAN,
        "pressure",
        _OURS,
        "Share of the interval in which at least one task waited for I/O to complete.",
    ),
    _row(
        "sys.pressure.io.full.percent",
        PERCENT,
        _R,
        _MEAN,
        "pressure",
        _OURS,
        "Share of the interval in which every non-idle task waited for I/O at once.",
    ),
    # -- process (the watched job's process tree) ------------------------------------------------
    _row(
        "sys.proc.cpu.percent",
        PERCENT,
        _R,
        _MEAN,
        "process",
        _OURS,
        "CPU used by the watched process and all its descendants, summed: 200 means two CPUs busy.",
    ),
    _row(
        "sys.compute.utilized",
        PERCENT,
        _R,
        _MEAN,
        "process",
        _COMET,
        "CPU used by the job's process tree, summed (as sys.proc.cpu.percent), under the name Comet's "
        "compute panels read (comet_ml sums its own process family the same way).",
    ),
    _row(
        "sys.proc.rss", BYTES, _G, _MAX, "process", _OURS, "Resident memory of the process tree, summed.", integer=True
    ),
    _row("sys.proc.threads", COUNT, _G, _MAX, "process", _OURS, "Threads in the process tree.", integer=True),
    _row(
        "sys.proc.open_files",
        COUNT,
        _G,
        _MAX,
        "process",
        _OURS,
        "Open file descriptors in the process tree; absent when a descriptor table cannot be read.",
        integer=True,
    ),
    _row(
        "sys.proc.count",
        COUNT,
        _G,
        _MAX,
        "process",
        _OURS,
        "Processes in the tree, the watched one included.",
        integer=True,
    ),
    _row(
        "sys.proc.gpu.<i>.used_memory",
        BYTES,
        _G,
        _MAX,
        "process",
        _OURS,
        "Memory the process tree holds on visible GPU i (as NVML reports it per process).",
        integer=True,
    ),
    _row(
        "sys.proc.gpu.<i>.utilization",
        PERCENT,
        _G,
        _MEAN,
        "process",
        _OURS,
        "Share of GPU i's streaming multiprocessors the process tree kept busy (NVML's per-process "
        "samples since the previous reading, summed over the tree); absent on MIG instances and vGPUs.",
    ),
    # -- agent_self -----------------------------------------------------------------------------
    _row(
        "sys.agent.cpu.percent",
        PERCENT,
        _R,
        _MEAN,
        "agent_self",
        _OURS,
        "CPU used by comet-agent itself (in-process: its own threads only, not the training code's).",
    ),
    _row(
        "sys.agent.rss",
        BYTES,
        _G,
        _MAX,
        "agent_self",
        _OURS,
        "Resident memory of comet-agent itself (not reported in-process, where it shares the job's memory).",
        integer=True,
    ),
    # -- gpu ------------------------------------------------------------------------------------
    _row(
        "sys.gpu.<i>.gpu_utilization",
        PERCENT,
        _G,
        _MEAN,
        "gpu",
        _COMET,
        "Share of the last sample period during which a kernel ran on GPU i (NVML); absent on a MIG instance.",
    ),
    _row(
        "sys.gpu.<i>.memory_utilization",
        PERCENT,
        _G,
        _MEAN,
        "gpu",
        _COMET,
        "Share of the last sample period during which GPU i's memory was read or written (NVML).",
    ),
    _row("sys.gpu.<i>.used_memory", BYTES, _G, _MAX, "gpu", _COMET, "Memory in use on GPU i.", integer=True),
    _row("sys.gpu.<i>.free_memory", BYTES, _G, _MIN, "gpu", _COMET, "Memory free on GPU i.", integer=True),
    _row("sys.gpu.<i>.total_memory", BYTES, _G, _LAST, "gpu", _COMET, "Memory of GPU i.", integer=True),
    _row(
        "sys.gpu.<i>.percent.used_memory",
        PERCENT,
        _G,
        _MAX,
        "gpu",
        _COMET,
        "sys.gpu.<i>.used_memory as a share of sys.gpu.<i>.total_memory.",
    ),
    _row("sys.gpu.<i>.temperature", CELSIUS, _G, _MEAN, "gpu", _COMET, "GPU i's core temperature."),
    _row(
        "sys.gpu.<i>.power_usage", MILLIWATTS, _G, _MEAN, "gpu", _COMET, "Power drawn by GPU i's board.", integer=True
    ),
    _row("sys.gpu.<i>.power_limit", MILLIWATTS, _G, _LAST, "gpu", _OURS, "GPU i's enforced power limit.", integer=True),
    _row(
        "sys.gpu.<i>.clock_sm",
        MEGAHERTZ,
        _G,
        _MEAN,
        "gpu",
        _OURS,
        "GPU i's streaming-multiprocessor clock.",
        integer=True,
    ),
    _row("sys.gpu.<i>.clock_mem", MEGAHERTZ, _G, _MEAN, "gpu", _OURS, "GPU i's memory clock.", integer=True),
    _row(
        "sys.gpu.<i>.fan_speed",
        PERCENT,
        _G,
        _MEAN,
        "gpu",
        _OURS,
        "GPU i's fan speed as a share of its maximum; absent on passively cooled boards.",
    ),
    _row(
        "sys.gpu.<i>.throttle_reasons",
        BITMASK,
        _G,
        _OR,
        "gpu",
        _OURS,
        "NVML's clocks-event (throttle) reasons of GPU i; 0 means not throttled.",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.ecc_errors_corrected",
        COUNT,
        _C,
        _LAST,
        "gpu",
        _OURS,
        "Corrected ECC memory errors on GPU i since the driver loaded (volatile).",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.ecc_errors_uncorrected",
        COUNT,
        _C,
        _LAST,
        "gpu",
        _OURS,
        "Uncorrected ECC memory errors on GPU i since the driver loaded (volatile).",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.pcie_tx_bps",
        BYTES_PER_S,
        _G,
        _MEAN,
        "gpu",
        _OURS,
        "Bytes per second GPU i sent over PCIe, as NVML measures it over its last 20 ms.",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.pcie_rx_bps",
        BYTES_PER_S,
        _G,
        _MEAN,
        "gpu",
        _OURS,
        "Bytes per second GPU i received over PCIe, as NVML measures it over its last 20 ms.",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.nvlink_tx_bytes",
        BYTES,
        _C,
        _LAST,
        "gpu",
        _OURS,
        "Data bytes GPU i sent over all its NVLinks since the driver loaded; absent without NVLink.",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.nvlink_rx_bytes",
        BYTES,
        _C,
        _LAST,
        "gpu",
        _OURS,
        "Data bytes GPU i received over all its NVLinks since the driver loaded; absent without NVLink.",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.nvlink_crc_flit_errors",
        COUNT,
        _C,
        _LAST,
        "gpu",
        _OURS,
        "NVLink flow-control CRC errors of GPU i, all links; absent without NVLink.",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.nvlink_crc_data_errors",
        COUNT,
        _C,
        _LAST,
        "gpu",
        _OURS,
        "NVLink data CRC errors of GPU i, all links; absent without NVLink.",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.nvlink_replay_errors",
        COUNT,
        _C,
        _LAST,
        "gpu",
        _OURS,
        "NVLink retries of GPU i, all links; absent without NVLink.",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.nvlink_recovery_errors",
        COUNT,
        _C,
        _LAST,
        "gpu",
        _OURS,
        "NVLink recovery events of GPU i, all links; absent without NVLink.",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.retired_pages_sbe",
        COUNT,
        _C,
        _LAST,
        "gpu",
        _OURS,
        "Memory pages of GPU i retired after repeated single-bit ECC errors (boards before Ampere; "
        "newer ones remap rows instead).",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.retired_pages_dbe",
        COUNT,
        _C,
        _LAST,
        "gpu",
        _OURS,
        "Memory pages of GPU i retired after a double-bit ECC error (boards before Ampere).",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.retired_pages_pending",
        COUNT,
        _G,
        _MAX,
        "gpu",
        _OURS,
        "1 when GPU i has pages waiting to be retired at the next driver reload, else 0.",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.remapped_rows_correctable",
        COUNT,
        _C,
        _LAST,
        "gpu",
        _OURS,
        "Memory rows of GPU i remapped after correctable errors (Ampere and later).",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.remapped_rows_uncorrectable",
        COUNT,
        _C,
        _LAST,
        "gpu",
        _OURS,
        "Memory rows of GPU i remapped after uncorrectable errors (Ampere and later).",
        integer=True,
    ),
    _row(
        "sys.gpu.<i>.row_remap_failure",
        COUNT,
        _G,
        _MAX,
        "gpu",
        _OURS,
        "1 when a row remapping of GPU i failed (the board needs service), else 0.",
        integer=True,
    ),
)

# ------------------------------------------------------------------------------------------------
# Prometheus names (engine/prometheus.py serves them on /metrics)
# ------------------------------------------------------------------------------------------------

_GAUGE, _COUNTER = "gauge", "counter"
_MIB = 1 / 2**20

#: pattern -> our Prometheus name, type and scale. Labels, not names, carry what a placeholder
#: holds (``gpu`` for ``<i>``, ``cpu`` for ``<NN>``: the kernel's CPU number); units follow
#: Prometheus' conventions (bytes, watts, hertz, ``_total`` on counters).
_PROMETHEUS: dict[str, Optional[Export]] = {
    "sys.cpu.percent.avg": Export("comet_agent_host_cpu_percent", _GAUGE, unit=PERCENT),
    "sys.compute.overall": None,  # sys.cpu.percent.avg rounded, under Comet's name
    "sys.cpu.percent.<NN>": Export("comet_agent_host_cpu_core_percent", _GAUGE, unit=PERCENT),
    "sys.cpu.cgroup.percent.avg": Export("comet_agent_cgroup_cpu_percent", _GAUGE, unit=PERCENT),
    "sys.ram.total": Export("comet_agent_host_memory_total_bytes", _GAUGE, unit=BYTES),
    "sys.ram.used": Export("comet_agent_host_memory_used_bytes", _GAUGE, unit=BYTES),
    "sys.ram.available": Export("comet_agent_host_memory_available_bytes", _GAUGE, unit=BYTES),
    "sys.ram.percent.used": Export("comet_agent_host_memory_used_percent", _GAUGE, unit=PERCENT),
    "sys.swap.total": Export("comet_agent_host_swap_total_bytes", _GAUGE, unit=BYTES),
    "sys.swap.used": Export("comet_agent_host_swap_used_bytes", _GAUGE, unit=BYTES),
    "sys.swap.percent.used": Export("comet_agent_host_swap_used_percent", _GAUGE, unit=PERCENT),
    "sys.load.avg": Export("comet_agent_host_load1", _GAUGE, unit=TASKS),
    "sys.load.avg5": Export("comet_agent_host_load5", _GAUGE, unit=TASKS),
    "sys.load.avg15": Export("comet_agent_host_load15", _GAUGE, unit=TASKS),
    "sys.disk.read_bps": Export("comet_agent_host_disk_read_bytes_per_second", _GAUGE, unit=BYTES_PER_S),
    "sys.disk.write_bps": Export("comet_agent_host_disk_write_bytes_per_second", _GAUGE, unit=BYTES_PER_S),
    "sys.disk.root.used": Export("comet_agent_root_filesystem_used_bytes", _GAUGE, unit=BYTES),
    "sys.disk.root.percent.used": Export("comet_agent_root_filesystem_used_percent", _GAUGE, unit=PERCENT),
    "sys.disk.job.used": Export("comet_agent_job_filesystem_used_bytes", _GAUGE, unit=BYTES),
    "sys.disk.job.percent.used": Export("comet_agent_job_filesystem_used_percent", _GAUGE, unit=PERCENT),
    "sys.network.send_bps": Export("comet_agent_host_network_send_bytes_per_second", _GAUGE, unit=BYTES_PER_S),
    "sys.network.receive_bps": Export("comet_agent_host_network_receive_bytes_per_second", _GAUGE, unit=BYTES_PER_S),
    "sys.pressure.cpu.some.percent": Export("comet_agent_pressure_cpu_some_percent", _GAUGE, unit=PERCENT),
    "sys.pressure.memory.some.percent": Export("comet_agent_pressure_memory_some_percent", _GAUGE, unit=PERCENT),
    "sys.pressure.memory.full.percent": Export("comet_agent_pressure_memory_full_percent", _GAUGE, unit=PERCENT),
    "sys.pressure.io.some.percent": Export("comet_agent_pressure_io_some_percent", _GAUGE, unit=PERCENT),
    "sys.pressure.io.full.percent": Export("comet_agent_pressure_io_full_percent", _GAUGE, unit=PERCENT),
    "sys.proc.cpu.percent": Export("comet_agent_job_cpu_percent", _GAUGE, unit=PERCENT),
    "sys.compute.utilized": None,  # sys.proc.cpu.percent under Comet's name
    "sys.proc.rss": Export("comet_agent_job_resident_memory_bytes", _GAUGE, unit=BYTES),
    "sys.proc.threads": Export("comet_agent_job_threads", _GAUGE, unit=COUNT),
    "sys.proc.open_files": Export("comet_agent_job_open_files", _GAUGE, unit=COUNT),
    "sys.proc.count": Export("comet_agent_job_processes", _GAUGE, unit=COUNT),
    "sys.proc.gpu.<i>.used_memory": Export("comet_agent_job_gpu_memory_used_bytes", _GAUGE, unit=BYTES),
    "sys.proc.gpu.<i>.utilization": Export("comet_agent_job_gpu_utilization_percent", _GAUGE, unit=PERCENT),
    "sys.agent.cpu.percent": Export("comet_agent_self_cpu_percent", _GAUGE, unit=PERCENT),
    "sys.agent.rss": Export("comet_agent_self_resident_memory_bytes", _GAUGE, unit=BYTES),
    "sys.gpu.<i>.gpu_utilization": Export("comet_agent_gpu_utilization_percent", _GAUGE, unit=PERCENT),
    "sys.gpu.<i>.memory_utilization": Export("comet_agent_gpu_memory_utilization_percent", _GAUGE, unit=PERCENT),
    "sys.gpu.<i>.used_memory": Export("comet_agent_gpu_memory_used_bytes", _GAUGE, unit=BYTES),
    "sys.gpu.<i>.free_memory": Export("comet_agent_gpu_memory_free_bytes", _GAUGE, unit=BYTES),
    "sys.gpu.<i>.total_memory": Export("comet_agent_gpu_memory_total_bytes", _GAUGE, unit=BYTES),
    "sys.gpu.<i>.percent.used_memory": Export("comet_agent_gpu_memory_used_percent", _GAUGE, unit=PERCENT),
    "sys.gpu.<i>.temperature": Export("comet_agent_gpu_temperature_celsius", _GAUGE, unit=CELSIUS),
    "sys.gpu.<i>.power_usage": Export("comet_agent_gpu_power_usage_watts", _GAUGE, 0.001, "W"),
    "sys.gpu.<i>.power_limit": Export("comet_agent_gpu_power_limit_watts", _GAUGE, 0.001, "W"),
    "sys.gpu.<i>.clock_sm": Export("comet_agent_gpu_sm_clock_hertz", _GAUGE, 1e6, "Hz"),
    "sys.gpu.<i>.clock_mem": Export("comet_agent_gpu_memory_clock_hertz", _GAUGE, 1e6, "Hz"),
    "sys.gpu.<i>.fan_speed": Export("comet_agent_gpu_fan_speed_percent", _GAUGE, unit=PERCENT),
    "sys.gpu.<i>.throttle_reasons": Export("comet_agent_gpu_clocks_event_reasons", _GAUGE, unit=BITMASK),
    "sys.gpu.<i>.ecc_errors_corrected": Export("comet_agent_gpu_ecc_errors_corrected_total", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.ecc_errors_uncorrected": Export("comet_agent_gpu_ecc_errors_uncorrected_total", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.pcie_tx_bps": Export("comet_agent_gpu_pcie_tx_bytes_per_second", _GAUGE, unit=BYTES_PER_S),
    "sys.gpu.<i>.pcie_rx_bps": Export("comet_agent_gpu_pcie_rx_bytes_per_second", _GAUGE, unit=BYTES_PER_S),
    "sys.gpu.<i>.nvlink_tx_bytes": Export("comet_agent_gpu_nvlink_tx_bytes_total", _COUNTER, unit=BYTES),
    "sys.gpu.<i>.nvlink_rx_bytes": Export("comet_agent_gpu_nvlink_rx_bytes_total", _COUNTER, unit=BYTES),
    "sys.gpu.<i>.nvlink_crc_flit_errors": Export("comet_agent_gpu_nvlink_crc_flit_errors_total", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.nvlink_crc_data_errors": Export("comet_agent_gpu_nvlink_crc_data_errors_total", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.nvlink_replay_errors": Export("comet_agent_gpu_nvlink_replay_errors_total", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.nvlink_recovery_errors": Export("comet_agent_gpu_nvlink_recovery_errors_total", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.retired_pages_sbe": Export("comet_agent_gpu_retired_pages_sbe_total", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.retired_pages_dbe": Export("comet_agent_gpu_retired_pages_dbe_total", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.retired_pages_pending": Export("comet_agent_gpu_retired_pages_pending", _GAUGE, unit=COUNT),
    "sys.gpu.<i>.remapped_rows_correctable": Export(
        "comet_agent_gpu_remapped_rows_correctable_total", _COUNTER, unit=COUNT
    ),
    "sys.gpu.<i>.remapped_rows_uncorrectable": Export(
        "comet_agent_gpu_remapped_rows_uncorrectable_total", _COUNTER, unit=COUNT
    ),
    "sys.gpu.<i>.row_remap_failure": Export("comet_agent_gpu_row_remap_failure", _GAUGE, unit=COUNT),
}

#: pattern -> dcgm-exporter's name, type (as its counters CSV declares it) and unit for the same
#: reading (NVIDIA/dcgm-exporter etc/default-counters.csv). DCGM reads these fields through NVML
#: too; the scale turns our unit into DCGM's (bytes to MiB, mW to W, bytes/s to KB).
_DCGM: dict[str, Export] = {
    "sys.gpu.<i>.gpu_utilization": Export("DCGM_FI_DEV_GPU_UTIL", _GAUGE, unit=PERCENT),
    "sys.gpu.<i>.memory_utilization": Export("DCGM_FI_DEV_MEM_COPY_UTIL", _GAUGE, unit=PERCENT),
    "sys.gpu.<i>.used_memory": Export("DCGM_FI_DEV_FB_USED", _GAUGE, _MIB, "MiB"),
    "sys.gpu.<i>.free_memory": Export("DCGM_FI_DEV_FB_FREE", _GAUGE, _MIB, "MiB"),
    "sys.gpu.<i>.temperature": Export("DCGM_FI_DEV_GPU_TEMP", _GAUGE, unit=CELSIUS),
    "sys.gpu.<i>.power_usage": Export("DCGM_FI_DEV_POWER_USAGE", _GAUGE, 0.001, "W"),
    "sys.gpu.<i>.clock_sm": Export("DCGM_FI_DEV_SM_CLOCK", _GAUGE, unit=MEGAHERTZ),
    "sys.gpu.<i>.clock_mem": Export("DCGM_FI_DEV_MEM_CLOCK", _GAUGE, unit=MEGAHERTZ),
    "sys.gpu.<i>.throttle_reasons": Export("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", _GAUGE, unit=BITMASK),
    "sys.gpu.<i>.ecc_errors_corrected": Export("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.ecc_errors_uncorrected": Export("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", _COUNTER, unit=COUNT),
    # dcgm-exporter declares these counters "in KB" although DCGM fills them with NVML's KB/s.
    "sys.gpu.<i>.pcie_tx_bps": Export("DCGM_FI_DEV_PCIE_TX_THROUGHPUT", _COUNTER, 1 / 1024, "KB/s"),
    "sys.gpu.<i>.pcie_rx_bps": Export("DCGM_FI_DEV_PCIE_RX_THROUGHPUT", _COUNTER, 1 / 1024, "KB/s"),
    "sys.gpu.<i>.nvlink_crc_flit_errors": Export("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.nvlink_crc_data_errors": Export("DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.nvlink_replay_errors": Export("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.nvlink_recovery_errors": Export("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.retired_pages_sbe": Export("DCGM_FI_DEV_RETIRED_SBE", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.retired_pages_dbe": Export("DCGM_FI_DEV_RETIRED_DBE", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.retired_pages_pending": Export("DCGM_FI_DEV_RETIRED_PENDING", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.remapped_rows_correctable": Export("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.remapped_rows_uncorrectable": Export("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", _COUNTER, unit=COUNT),
    "sys.gpu.<i>.row_remap_failure": Export("DCGM_FI_DEV_ROW_REMAP_FAILURE", _GAUGE, unit=COUNT),
}


def _derived_export(entry: CatalogueEntry) -> Export:
    """A Prometheus name for a row without one in ``_PROMETHEUS``: its name's words, placeholder
    left out (it becomes a label), under ``comet_agent_``; ``_total`` on a counter."""
    words = [word for word in entry.pattern.split(".")[1:] if word not in _PLACEHOLDERS]
    name = "comet_agent_" + "_".join(re.sub(r"[^a-zA-Z0-9_]", "_", word) for word in words)
    kind = _COUNTER if entry.kind is Kind.COUNTER else _GAUGE
    return Export(name + ("_total" if kind == _COUNTER else ""), kind, unit=entry.unit)


def _with_exports(entry: CatalogueEntry) -> CatalogueEntry:
    prometheus = _PROMETHEUS[entry.pattern] if entry.pattern in _PROMETHEUS else _derived_export(entry)
    return dataclasses.replace(entry, prometheus=prometheus, dcgm=_DCGM.get(entry.pattern))


CATALOGUE = tuple(_with_exports(entry) for entry in CATALOGUE)

_EXACT: dict[str, tuple[int, CatalogueEntry]] = {
    entry.pattern: (position, entry) for position, entry in enumerate(CATALOGUE) if entry._regex is None
}
_PATTERNED: tuple[tuple[int, CatalogueEntry], ...] = tuple(
    (position, entry) for position, entry in enumerate(CATALOGUE) if entry._regex is not None
)
if len(_EXACT) + len(_PATTERNED) != len(CATALOGUE):
    raise ValueError("the catalogue lists a name twice")

# Sized above what one host emits (512 CPUs + 16 GPUs x 15 series + the rest is under 1000).
_CACHE_SIZE = 8192


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _lookup(name: str) -> Optional[tuple[int, CatalogueEntry, Optional[int]]]:
    found = _EXACT.get(name)
    if found is not None:
        return found[0], found[1], None
    if not name.startswith("sys."):
        return None  # a user metric: every catalogued name is a system one
    for position, entry in _PATTERNED:
        match = entry._regex.fullmatch(name)  # type: ignore[union-attr]
        if match is not None:
            return position, entry, int(match.group(1))
    return None


def entry_for(name: str) -> Optional[CatalogueEntry]:
    """The catalogue row a metric name belongs to, or ``None`` for a name we do not emit.

    Example:
        >>> entry_for("sys.cpu.percent.07").pattern
        'sys.cpu.percent.<NN>'
        >>> entry_for("loss") is None
        True
    """
    found = _lookup(name)
    return found[1] if found is not None else None


def unit_for(name: str) -> Optional[str]:
    """The unit of a metric name (``percent``, ``bytes``, ``mW``...), or ``None`` when not catalogued."""
    found = _lookup(name)
    return found[1].unit if found is not None else None


def window_rule(name: str) -> Window:
    """How a push window aggregates this metric; ``Window.MEAN`` for a name not in the catalogue.

    ``Window`` values are strings too: ``window_rule("sys.ram.used") == "max"``.
    """
    found = _lookup(name)
    return found[1].window if found is not None else Window.MEAN


def index_of(name: str) -> Optional[int]:
    """The number a name's placeholder holds: the GPU index for ``<i>``, CPU number + 1 for ``<NN>``.

    ``None`` for a literal name or one not in the catalogue.

    Example:
        >>> index_of("sys.gpu.10.temperature"), index_of("sys.cpu.percent.05"), index_of("sys.ram.used")
        (10, 5, None)
    """
    found = _lookup(name)
    return found[2] if found is not None else None


def sort_key(name: str) -> tuple:
    """A key that orders names as the catalogue does, indexed series by number (2 before 10).

    Catalogued names come first, in catalogue order, then by index; other names follow,
    alphabetically. Readers (pages, ``show``, exporters) sort with it so that
    ``sys.cpu.percent.100`` follows ``sys.cpu.percent.99``, not ``sys.cpu.percent.10``.
    """
    found = _lookup(name)
    if found is None:
        return (len(CATALOGUE), -1, name)
    position, _, index = found
    return (position, -1 if index is None else index, name)


# ------------------------------------------------------------------------------------------------
# docs/metrics.md
# ------------------------------------------------------------------------------------------------

_SOURCE_TITLES = {
    "cpu": ("CPU", "`CpuCollector` (`/proc/stat`, cgroup v2 `cpu.stat`)", ("CpuSample",)),
    "memory": ("Memory and swap", "`MemoryCollector` (`/proc/meminfo`)", ("MemorySample",)),
    "load": ("Load", "`LoadCollector` (`/proc/loadavg`)", ("LoadSample",)),
    "disk": ("Disk", "`DiskCollector` (`/proc/diskstats`, `statvfs`)", ("DiskIoSample", "DiskUsageSample")),
    "network": ("Network", "`NetworkCollector` (`/proc/net/dev`)", ("NetworkSample",)),
    "pressure": (
        "Pressure stall information",
        "`PressureCollector` (`/proc/pressure/cpu`, `memory`, `io`; Linux 4.20 and later, with PSI enabled)",
        ("PressureSample",),
    ),
    "process": (
        "The watched job's process tree",
        "`ProcessTreeCollector` (`/proc/<pid>/stat`, `fd`; NVML)",
        ("ProcessTreeSample",),
    ),
    "agent_self": ("comet-agent itself", "`AgentSelfCollector` (`/proc/self/stat`)", ("AgentSelfSample",)),
    "gpu": ("GPUs", "`GpuCollector` (NVML)", ("GpuSample",)),
}

_MARKDOWN_HEAD = """\
# Metrics

<!-- Generated from comet_agent/catalogue.py by `python -m comet_agent.catalogue --markdown`.
     Do not edit by hand: tests/unit/test_catalogue.py fails when this file differs. -->

Every series comet-agent records, one row per name pattern. All names start with `sys.`, as the
official `comet_ml` SDK names its system metrics; *origin* says whether a name is Comet's own
(the SDK logs it too, with the same meaning) or our extension.

- `<i>` is a GPU's position in the visible device list (`CUDA_VISIBLE_DEVICES` honoured), as in
  Comet: `sys.gpu.0.…`, …, `sys.gpu.15.…`.
- `<NN>` is a CPU's kernel number plus one, at least two digits, as in Comet:
  `sys.cpu.percent.01` … `sys.cpu.percent.99`, `sys.cpu.percent.100`, ….
- A reading the hardware or the OS cannot give produces no point, never a fake 0.
- *kind*: **gauge** (a level at the sample time), **counter** (a running total since its source
  last reset), **rate** (an average over the interval between two readings; none on a run's
  first sample).
- *window*: a push carries every sample of its window, each with its own timestamp; with
  `COMET_AGENT_RESOLUTION=window` (and for what the per-kind endpoints carry) it carries one value
  per series for the samples of its window instead: **mean**, **max** (memory and counts in use: an OOM
  risk is a peak), **min** (memory free), **last** (totals, limits, counters) or **or** (bitmasks:
  no event is lost). Series in bytes, bytes/s, mW, MHz, counts and bitmasks stay whole numbers
  (a window's mean is rounded).

How they travel: each push is one metric batch (`batch/logger/experiment/metric`, gzip above
1 KiB) carrying every series under its own name, as the official SDK's system monitors send them.
With the per-kind endpoints option (`COMET_AGENT_PER_KIND_ENDPOINTS=true`, or `Agent(per_kind_endpoints=True)`)
the per-CPU figures go in one `log_cpu_metrics` call instead (the server names them by position,
so they go there only when CPUs `01` to `NN` are all present; otherwise every figure goes in the
metric batch under its own name), `sys.ram.total`/`sys.ram.used` in `log_ram_metrics`,
`sys.load.avg` in `log_load_metrics`, each GPU's `free_memory`, `used_memory`, `total_memory` and
`gpu_utilization` in `log_gpu_metrics` (when all four are known), and everything else in the
metric batch.

On a Prometheus `/metrics` page (`comet-agent run --prometheus-listen`, `comet-agent daemon
--prometheus-listen`) each series is served under the name in the *Prometheus* column, labelled
`experiment_key` and `node`, plus `gpu` (the index `<i>`, with `UUID`) or `cpu` (the kernel's CPU
number, `<NN>` minus one); a GPU reading dcgm-exporter also exports is served a second time under
dcgm-exporter's name, unit and labels (`gpu`, `UUID`, `device`, `modelName`, `Hostname`), so its
Grafana dashboards work unchanged.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _prometheus_cell(entry: CatalogueEntry) -> str:
    if entry.prometheus is None:
        return "—"
    text = f"`{entry.prometheus.name}`"
    if entry.prometheus.unit != entry.unit:
        text += f" ({entry.prometheus.unit})"
    if entry.dcgm is not None:
        text += f"; dcgm: `{entry.dcgm.name}` ({entry.dcgm.unit}, {entry.dcgm.type})"
    return text


def render_markdown() -> str:
    """The text of ``docs/metrics.md``: the catalogue as Markdown tables, one per collector.

    Example:
        >>> render_markdown().startswith("# Metrics")
        True
    """
    lines = [_MARKDOWN_HEAD]
    for source, (title, collector, records) in _SOURCE_TITLES.items():
        rows = [entry for entry in CATALOGUE if entry.source == source]
        lines.append(f"## {title}\n")
        lines.append(f"From {collector}; records: {', '.join(f'`{record}`' for record in records)}.\n")
        lines.append("| name | unit | kind | window | origin | Prometheus | description |")
        lines.append("|---|---|---|---|---|---|---|")
        for entry in rows:
            lines.append(
                f"| `{entry.pattern}` | {entry.unit} | {entry.kind.value} | {entry.window.value} "
                f"| {entry.origin.value} | {_prometheus_cell(entry)} | {_cell(entry.description)} |"
            )
        lines.append("")
    unknown = sorted({entry.source for entry in CATALOGUE} - set(_SOURCE_TITLES))
    if unknown:
        raise ValueError(f"catalogue sources without a docs section: {unknown}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m comet_agent.catalogue --markdown > docs/metrics.md``: print the docs' text (UTF-8)."""
    import argparse  # here, not at the top: every agent imports this module, only this tool parses arguments

    parser = argparse.ArgumentParser(prog="python -m comet_agent.catalogue", description=__doc__.split("\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print docs/metrics.md's text")
    arguments = parser.parse_args(argv)
    if not arguments.markdown:
        parser.print_usage(sys.stderr)
        return 2
    # Bytes, not text: the file is UTF-8 (°C) whatever the terminal's locale.
    sys.stdout.buffer.write(render_markdown().encode("utf-8"))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
