"""Pressure stall information (PSI): the share of time tasks waited for CPU, memory or I/O.

Reads: ``<procfs_root>/pressure/cpu``, ``memory`` and ``io`` each sample (three small files; only
their ``total=`` fields are parsed). The figures are host-wide: ``/proc/pressure`` is not
namespaced, so inside a container they describe the whole host.

Feeds: ``APIExperiment.log_metrics_batch`` (the metric batch of each push), through the record's
own ``metric_pairs()``: ``sys.pressure.cpu.some.percent``, ``sys.pressure.memory.some.percent``,
``sys.pressure.memory.full.percent``, ``sys.pressure.io.some.percent`` and
``sys.pressure.io.full.percent``: the percentage of wall time, over the interval since the previous
sample, in which at least one task (``some``) or every non-idle task (``full``) was stalled waiting
for the resource. High CPU ``some`` means runnable work queued for a CPU (an oversubscribed host,
or a throttling quota); memory ``full`` is thrashing; I/O ``some`` is a data loader waiting on
storage.

Which of the kernel's figures we send, and why:

- ``total`` (stall time in microseconds since boot), turned into a share of the interval between
  two samples. It covers exactly the interval, whatever its length: at the default push cadence
  (68 s) the kernel's ``avg10`` would describe only the last ten seconds, weighted towards the most
  recent, and miss a stall between two samples. With ``--sample-interval`` the push window's mean
  of these shares is the share over the window. Rates need two readings: the first sample returns
  nothing, as for CPU, disk and network.
- not ``avg10``/``avg60``/``avg300``: fixed-window running averages that the kernel decays on its
  own clock; a chart smooths our interval shares over any span instead.
- not CPU ``full``: undefined at the system level; since Linux 5.13 the kernel prints it as
  zeros (and before, not at all), so sending it would be a fake 0.

Absent source: a kernel without PSI (before 4.20, built without ``CONFIG_PSI``, or booted with
``psi=0``) has no ``/proc/pressure`` or refuses to read it; the constructor raises ``Unavailable``
with that reason, and the other collectors carry on.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from comet_agent.collectors import Unavailable
from comet_agent.sources import procfs

#: The ``/proc/pressure`` files read, in the order of ``PressureCollector._read``.
PRESSURE_RESOURCES = ("cpu", "memory", "io")


@dataclass(frozen=True)
class PressureSample:
    """The share of wall time stalled on each resource over the interval, in percent (0 to 100).

    ``some``: at least one task was stalled; ``full``: every non-idle task was. ``None`` when
    the interval gives no figure (the kernel lacks the line, or a total went backwards).
    """

    cpu_some_percent: Optional[float]
    memory_some_percent: Optional[float]
    memory_full_percent: Optional[float]
    io_some_percent: Optional[float]
    io_full_percent: Optional[float]
    taken_at_ms: int

    def metric_pairs(self) -> list[tuple[str, Optional[float]]]:
        """``[(metric name, percent or None)]`` for ``payloads.metric_points`` (``records.MetricRecord``)."""
        return [
            ("sys.pressure.cpu.some.percent", self.cpu_some_percent),
            ("sys.pressure.memory.some.percent", self.memory_some_percent),
            ("sys.pressure.memory.full.percent", self.memory_full_percent),
            ("sys.pressure.io.some.percent", self.io_some_percent),
            ("sys.pressure.io.full.percent", self.io_full_percent),
        ]


def _stalled_percent(now_us: Optional[int], before_us: Optional[int], wall_delta_us: float) -> Optional[float]:
    if now_us is None or before_us is None or now_us < before_us:
        return None  # no line, or a total that went backwards: no honest figure for this interval
    # Our clock and the kernel's are read a few microseconds apart: a stall covering the whole
    # interval can come out a hair above 100.
    return min(100.0, 100.0 * (now_us - before_us) / wall_delta_us)


class PressureCollector:
    """Periodic collector of CPU, memory and I/O stall shares (``PressureSample``), cadence ``"cpu"``.

    Args:
        procfs_root: the ``/proc`` tree to read.
        clock: monotonic clock in seconds, for the interval between readings.

    Raises:
        Unavailable: the kernel gives no pressure stall information here (see the module).
    """

    name = "pressure"
    cadence = "cpu"

    def __init__(self, *, procfs_root: str = "/proc", clock: Callable[[], float] = time.monotonic):
        self._procfs_root = procfs_root
        self._clock = clock
        directory = os.path.join(procfs_root, "pressure")
        if not os.path.isdir(directory):
            raise Unavailable(
                f"no {directory}: this kernel gives no pressure stall information "
                "(before Linux 4.20, built without CONFIG_PSI, or booted with psi=0)"
            )
        try:
            self._read()
        except (OSError, ValueError) as exc:
            raise Unavailable(
                f"cannot read pressure stall information in {directory}: {getattr(exc, 'strerror', None) or exc}"
            ) from exc
        self._previous: Optional[tuple[tuple[procfs.PressureTotals, ...], float]] = None

    def _read(self) -> tuple[procfs.PressureTotals, ...]:
        return tuple(procfs.read_pressure(self._procfs_root, resource) for resource in PRESSURE_RESOURCES)

    def sample(self, now_ms: int) -> Sequence[PressureSample]:
        """Return the stall shares since the previous call; nothing on the first call."""
        return self.decode(self.capture(), now_ms)

    def capture(self) -> tuple[tuple[str, ...], float]:
        """Read the three files now, parse nothing (``decode`` does, later, in capture order)."""
        texts = tuple(procfs.read_host_file(self._procfs_root, "pressure", resource) for resource in PRESSURE_RESOURCES)
        return texts, self._clock()

    def decode(self, captured: tuple[tuple[str, ...], float], now_ms: int) -> Sequence[PressureSample]:
        """The stall shares between the capture decoded before and this one; nothing for the first."""
        texts, now_s = captured
        totals = tuple(procfs.parse_pressure(text) for text in texts)
        previous, self._previous = self._previous, (totals, now_s)
        if previous is None:
            return []
        (cpu_before, memory_before, io_before), previous_s = previous
        wall_delta_us = (now_s - previous_s) * 1_000_000
        if wall_delta_us <= 0:
            return []
        cpu, memory, io = totals
        return [
            PressureSample(
                cpu_some_percent=_stalled_percent(cpu.some_us, cpu_before.some_us, wall_delta_us),
                memory_some_percent=_stalled_percent(memory.some_us, memory_before.some_us, wall_delta_us),
                memory_full_percent=_stalled_percent(memory.full_us, memory_before.full_us, wall_delta_us),
                io_some_percent=_stalled_percent(io.some_us, io_before.some_us, wall_delta_us),
                io_full_percent=_stalled_percent(io.full_us, io_before.full_us, wall_delta_us),
                taken_at_ms=now_ms,
            )
        ]

    def close(self) -> None:
        """Forget the previous reading (nothing to release)."""
        self._previous = None
