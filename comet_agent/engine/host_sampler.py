"""The host's periodic collectors, sampled once however many jobs read them.

Host series (CPU, memory, load, disk I/O and ``/``, network, the agent's own footprint, every
GPU) belong to the machine, not to a job. ``HostSampler`` owns those collectors; each ``Job``
(``engine/job.py``) adds its own job-specific ones (process tree, job-directory usage) and picks
its GPUs. In-process (``Agent``) one job reads one sampler; in the daemon every registered job
reads the same sampler, and a reading younger than ``reuse_within_s`` is handed out again, so
the host is sampled once per tick for all jobs and the rates cover whole ticks.

A collector's failure costs its own data only: it is logged once per condition and its records
are left out of that reading.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional, Sequence

from comet_agent.collectors import PeriodicCollector
from comet_agent.warn_once import WarnOnce

log = logging.getLogger(__name__)

#: The two sampling cadences: everything but GPUs follows ``cpuMonitorIntervalMillis``, GPUs
#: ``gpuMonitorIntervalMillis`` (as Comet's SDK does).
CADENCES = ("cpu", "gpu")


def sample_collectors(collectors: Sequence[Any], now_ms: int, warn: WarnOnce) -> list[Any]:
    """Sample each collector; one collector's exception costs its own records only (logged once)."""
    records: list[Any] = []
    for collector in collectors:
        try:
            records.extend(collector.sample(now_ms))
        except Exception as exc:  # a collector's failure ends here: logged once per condition
            warn(
                ("collector", collector.name, type(exc).__name__),
                logging.WARNING,
                "collector %s failed: %s",
                collector.name,
                exc,
            )
    return records


def close_collectors(collectors: Sequence[Any]) -> None:
    """Release what collectors hold (NVML handles); best effort, never raises."""
    for collector in collectors:
        close = getattr(collector, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # closing is best effort
                pass


class HostSampler:
    """Host-wide periodic collectors behind one lock, with an optional reuse window.

    Args:
        collectors: host collectors; each has ``name``, ``cadence`` (``"cpu"`` or ``"gpu"``),
            ``sample(now_ms)`` and optionally ``close()``.
        reuse_within_s: a reading of a cadence younger than this is returned again instead of
            sampling anew (0: always sample; the daemon passes half its tick).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        collectors: Sequence[PeriodicCollector],
        *,
        reuse_within_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._collectors: dict[str, list[Any]] = {cadence: [] for cadence in CADENCES}
        for collector in collectors:
            self._collectors.setdefault(getattr(collector, "cadence", "cpu"), []).append(collector)
        self.reuse_within_s = reuse_within_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, list[Any]]] = {}
        self._warn = WarnOnce(log)
        self.samples_taken = 0

    @classmethod
    def build(
        cls,
        *,
        procfs_root: str = "/proc",
        cgroup_pid: Optional[int] = None,
        include_gpu: bool = True,
        reuse_within_s: float = 0.0,
    ) -> tuple["HostSampler", dict[str, str]]:
        """The host collectors that can run here, and ``{name: reason}`` for those that cannot.

        ``cgroup_pid``: the job whose cgroup CPU quota makes ``sys.cpu.cgroup.percent.avg`` apply
        (in-process: the watched job; the daemon serves many jobs and passes None).
        """
        from comet_agent.collectors.periodic import build_periodic_collectors

        collectors, unavailable = build_periodic_collectors(
            procfs_root=procfs_root, pid=cgroup_pid, directory=None, include_gpu=include_gpu, with_process_tree=False
        )
        return cls(collectors, reuse_within_s=reuse_within_s), unavailable

    def has(self, cadence: str) -> bool:
        """Whether any collector samples at this cadence (no GPU collector: no GPU pushes)."""
        return bool(self._collectors.get(cadence))

    @property
    def has_gpu(self) -> bool:
        return self.has("gpu")

    def sample(self, cadence: str, now_ms: int) -> list[Any]:
        """The host's records for ``cadence`` now (or from within the reuse window)."""
        with self._lock:
            now_s = self._clock()
            last = self._last.get(cadence)
            if last is not None and self.reuse_within_s > 0 and now_s - last[0] < self.reuse_within_s:
                return last[1]
            records = sample_collectors(self._collectors.get(cadence, ()), now_ms, self._warn)
            self._last[cadence] = (now_s, records)
            self.samples_taken += 1
            return records

    def close(self) -> None:
        """Release the collectors (NVML)."""
        with self._lock:
            for collectors in self._collectors.values():
                close_collectors(collectors)
