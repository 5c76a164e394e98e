"""CPU utilisation, per CPU and overall, from deltas of ``/proc/stat`` (and cgroup v2 ``cpu.stat``).

Reads: ``<procfs_root>/stat`` each sample; at construction, ``<procfs_root>/<pid|self>/cgroup`` and
the ``cpu.max`` files from that cgroup up to ``<cgroup_root>``; then ``cpu.stat`` of the cgroup
holding the tightest quota each sample.

Feeds: ``sys.cpu.percent.avg`` and ``sys.cpu.percent.NN`` metrics (the metric batch, or
``log_cpu_metrics`` with the per-kind endpoints option; see ``comet_agent/delivery/payloads.py``).

Rates need two readings: the first ``sample()`` returns nothing (never a fake 0.0). A CPU whose
counters went backwards (counter reset, a CPU taken offline and back) or that is missing from
one of the two readings (hotplug) gets no figure for that interval; the others are reported,
ordered by CPU number.

Cgroup-aware overall figure: when a cgroup v2 ``cpu.max`` quota applies to the job (or to the
agent itself when no pid is watched), ``overall_percent`` is the cgroup's CPU time over the
interval as a share of what the quota allows in that wall time,
``usage_usec delta / (quota/period * wall delta)``, capped at 100. A container limited to 2 CPUs
on a 64-CPU host that uses both reads 100 %, not 3 %. The host-wide figure stays available as
``host_overall_percent``. cgroup v1 quotas are not read (v1 is legacy; documented limitation).

Absent source: no ``/proc/stat`` raises ``Unavailable`` from the constructor.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Optional, Sequence

from comet_agent.collectors import Unavailable
from comet_agent.records import CpuSample
from comet_agent.sources import procfs

logger = logging.getLogger(__name__)


def _percent(busy_delta_ticks: int, total_delta_ticks: int) -> Optional[float]:
    # A counter that went backwards, or an interval too short for one tick, gives no rate.
    if total_delta_ticks <= 0 or busy_delta_ticks < 0 or busy_delta_ticks > total_delta_ticks:
        return None
    return 100.0 * busy_delta_ticks / total_delta_ticks


class CpuCollector:
    """Periodic collector of CPU utilisation (``CpuSample``), cadence ``"cpu"``.

    Args:
        procfs_root: the ``/proc`` tree to read.
        cgroup_root: where the cgroup v2 hierarchy is mounted; the quota search starts at the
            cgroup of ``pid`` (or of the agent itself).
        pid: the watched job, whose cgroup quota (if any) makes the overall figure cgroup-aware.
        clock: monotonic clock in seconds, for the wall time a cgroup quota is measured against.

    Raises:
        Unavailable: ``<procfs_root>/stat`` cannot be read.
    """

    name = "cpu"
    cadence = "cpu"

    def __init__(
        self,
        *,
        procfs_root: str = "/proc",
        cgroup_root: str = "/sys/fs/cgroup",
        pid: Optional[int] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._procfs_root = procfs_root
        self._clock = clock
        try:
            procfs.read_stat(procfs_root)
        except OSError as exc:
            raise Unavailable(f"cannot read {os.path.join(procfs_root, 'stat')}: {exc.strerror or exc}") from exc
        self._cgroup_limit = self._find_cgroup_limit(procfs_root, cgroup_root, pid)
        self._previous: Optional[tuple[procfs.StatReading, Optional[int], float]] = None

    @staticmethod
    def _find_cgroup_limit(procfs_root: str, cgroup_root: str, pid: Optional[int]) -> Optional[procfs.CgroupCpuLimit]:
        try:
            cgroup_path = procfs.read_cgroup_membership(procfs_root, pid).unified_path
        except OSError:
            cgroup_path = None
        limit = procfs.find_cgroup_cpu_limit(cgroup_root, cgroup_path or "/")
        if limit is not None:
            logger.info(
                "cpu: cgroup quota of %.2f CPUs applies (%s); overall CPU is relative to it",
                limit.quota_cpus,
                limit.directory,
            )
        return limit

    @property
    def cgroup_quota_cpus(self) -> Optional[float]:
        """The CPU quota (in CPUs) the overall figure is relative to, or ``None`` for host-wide."""
        return self._cgroup_limit.quota_cpus if self._cgroup_limit else None

    def _read_cgroup_usage_usec(self) -> Optional[int]:
        if self._cgroup_limit is None:
            return None
        try:
            return procfs.read_cgroup_cpu_usage_usec(self._cgroup_limit.directory)
        except (OSError, ValueError):
            return None

    def sample(self, now_ms: int) -> Sequence[CpuSample]:
        """Return one ``CpuSample`` for the interval since the previous call; nothing on the first."""
        return self.decode(self.capture(), now_ms)

    def capture(self) -> tuple[str, Optional[int], float]:
        """Read the sources now, parse nothing (``decode`` does, later, in capture order)."""
        text = procfs.read_host_file(self._procfs_root, "stat")
        # Keep the CPU lines only: a capture may wait a minute for its decoding, and on a big host
        # the interrupt counts after them are most of the file.
        end = text.find("\nintr ")
        return (text[: end + 1] if end > 0 else text), self._read_cgroup_usage_usec(), self._clock()

    def decode(self, captured: tuple[str, Optional[int], float], now_ms: int) -> Sequence[CpuSample]:
        """The ``CpuSample`` of one capture, against the capture decoded before it."""
        text, cgroup_usage_usec, now_s = captured
        reading = procfs.parse_stat(text)
        previous, self._previous = self._previous, (reading, cgroup_usage_usec, now_s)
        if previous is None:
            return []
        previous_reading, previous_usage_usec, previous_s = previous

        cpu_numbers: list[int] = []
        per_cpu_percent: list[float] = []
        # Only CPUs present in both readings: a CPU that came online has no baseline, one that
        # went offline has no end point.
        for cpu_number in sorted(reading.per_cpu.keys() & previous_reading.per_cpu.keys()):
            now_times, before_times = reading.per_cpu[cpu_number], previous_reading.per_cpu[cpu_number]
            percent = _percent(
                now_times.busy_ticks - before_times.busy_ticks, now_times.total_ticks - before_times.total_ticks
            )
            if percent is not None:
                cpu_numbers.append(cpu_number)
                per_cpu_percent.append(percent)

        host_overall: Optional[float] = None
        if reading.aggregate is not None and previous_reading.aggregate is not None:
            host_overall = _percent(
                reading.aggregate.busy_ticks - previous_reading.aggregate.busy_ticks,
                reading.aggregate.total_ticks - previous_reading.aggregate.total_ticks,
            )

        overall, source = host_overall, "host"
        if self._cgroup_limit is not None:
            source = "cgroup"
            overall = None
            wall_delta_s = now_s - previous_s
            if cgroup_usage_usec is not None and previous_usage_usec is not None and wall_delta_s > 0:
                usage_delta_usec = cgroup_usage_usec - previous_usage_usec
                if usage_delta_usec >= 0:
                    allowed_usec = self._cgroup_limit.quota_cpus * wall_delta_s * 1_000_000
                    # The kernel enforces the quota per period; a reading slightly above 100 is
                    # jitter between our clock and the kernel's accounting, not real usage.
                    overall = min(100.0, 100.0 * usage_delta_usec / allowed_usec)

        if not per_cpu_percent and overall is None and host_overall is None:
            return []
        return [
            CpuSample(
                per_cpu_percent=tuple(per_cpu_percent),
                cpu_numbers=tuple(cpu_numbers),
                overall_percent=overall,
                overall_source=source,
                host_overall_percent=host_overall,
                cgroup_quota_cpus=self.cgroup_quota_cpus,
                taken_at_ms=now_ms,
            )
        ]

    def close(self) -> None:
        """Forget the previous reading (nothing to release)."""
        self._previous = None
