"""The host's periodic collectors, sampled once however many jobs read them.

Host series (CPU, memory, load, disk I/O and ``/``, network, the agent's own footprint, every
GPU) belong to the machine, not to a job. ``HostSampler`` owns those collectors; each ``Job``
(``engine/job.py``) adds its own job-specific ones (process tree, job-directory usage) and picks
its GPUs. In-process (``Agent``) one job reads one sampler; in the daemon every registered job
reads the same sampler, and a reading younger than ``reuse_within_s`` is handed out again, so
the host is sampled once per tick for all jobs and the rates cover whole ticks.

A collector's failure costs its own data only: it is logged once per condition and its records
are left out of that reading.

Deferred decoding (``defer_decoding=True``, what an in-process agent uses): a tick only
*captures* what the host collectors that can split their work read (``CapturingCollector``:
the text of ``/proc/stat``, ``meminfo``, ... and a clock reading), and ``drain()`` decodes the
captures into records in capture order when the job pushes, or every ``DEFER_MAX_TICKS`` ticks,
whichever comes first. At one sample a second each tick runs cold (a second of idling flushes
the CPU's caches), and parsing cold costs several times what the same parsing costs in a batch
(bench/bench_tick.py). The records are the same either way; they reach the window
later. Readers of the latest records at every tick (the Prometheus page) need them at once, so
an agent serving one samples without deferring, and so does the daemon, whose readings are
shared by every job.
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

#: With deferred decoding, captures are decoded at the latest after this many ticks, so memory
#: stays bounded when pushes are rare (a tick's capture is ~5 kB of text on a 2-CPU host; the CPU
#: lines of /proc/stat add ~60 bytes a CPU).
DEFER_MAX_TICKS = 60


def sample_collectors(collectors: Sequence[Any], now_ms: int, warn: WarnOnce) -> list[Any]:
    """Sample each collector; one collector's exception costs its own records only (logged once)."""
    records: list[Any] = []
    for collector in collectors:
        try:
            records.extend(collector.sample(now_ms))
        except Exception as exc:  # a collector's failure ends here: logged once per condition
            warn_failed(warn, collector, exc)
    return records


def warn_failed(warn: WarnOnce, collector: Any, exc: Exception) -> None:
    """Log a collector's failure once per (collector, exception type)."""
    warn(
        ("collector", collector.name, type(exc).__name__),
        logging.WARNING,
        "collector %s failed: %s",
        collector.name,
        exc,
    )


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
        defer_decoding: ``sample()`` captures what ``CapturingCollector``s read and returns only
            the other collectors' records; ``drain()`` returns theirs (see the module).
    """

    def __init__(
        self,
        collectors: Sequence[PeriodicCollector],
        *,
        reuse_within_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        defer_decoding: bool = False,
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
        self.defer_decoding = defer_decoding
        # cadence -> [(now_ms, [(collector, captured)])], oldest first; and decoded records.
        self._pending: dict[str, list[tuple[int, list[tuple[Any, Any]]]]] = {cadence: [] for cadence in CADENCES}
        self._decoded: dict[str, list[Any]] = {cadence: [] for cadence in CADENCES}

    @classmethod
    def build(
        cls,
        *,
        procfs_root: str = "/proc",
        cgroup_pid: Optional[int] = None,
        include_gpu: bool = True,
        reuse_within_s: float = 0.0,
        defer_decoding: bool = False,
        agent_threads: Optional[Callable[[], Sequence[int]]] = None,
    ) -> tuple["HostSampler", dict[str, str]]:
        """The host collectors that can run here, and ``{name: reason}`` for those that cannot.

        ``cgroup_pid``: the job whose cgroup CPU quota makes ``sys.cpu.cgroup.percent.avg`` apply
        (in-process: the watched job; the daemon serves many jobs and passes None).
        """
        from comet_agent.collectors.periodic import build_periodic_collectors

        collectors, unavailable = build_periodic_collectors(
            procfs_root=procfs_root,
            pid=cgroup_pid,
            directory=None,
            include_gpu=include_gpu,
            with_process_tree=False,
            agent_threads=agent_threads,
        )
        return cls(collectors, reuse_within_s=reuse_within_s, defer_decoding=defer_decoding), unavailable

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
            if self.defer_decoding:
                records = self._capture(cadence, now_ms)
            else:
                records = sample_collectors(self._collectors.get(cadence, ()), now_ms, self._warn)
            self._last[cadence] = (now_s, records)
            self.samples_taken += 1
            return records

    def drain(self, cadence: str) -> list[Any]:
        """The records of the captures not drained yet, decoded in capture order (deferred
        decoding; empty otherwise)."""
        with self._lock:
            self._decode_pending(cadence)
            records, self._decoded[cadence] = self._decoded.get(cadence, []), []
            return records

    def _capture(self, cadence: str, now_ms: int) -> list[Any]:
        records: list[Any] = []
        captures: list[tuple[Any, Any]] = []
        for collector in self._collectors.get(cadence, ()):
            capture = getattr(collector, "capture", None)
            try:
                if capture is None:
                    records.extend(collector.sample(now_ms))
                else:
                    captures.append((collector, capture()))
            except Exception as exc:  # a collector's failure ends here: logged once per condition
                warn_failed(self._warn, collector, exc)
        pending = self._pending.setdefault(cadence, [])
        pending.append((now_ms, captures))
        if len(pending) >= DEFER_MAX_TICKS:
            self._decode_pending(cadence)
        return records

    def _decode_pending(self, cadence: str) -> None:
        pending, self._pending[cadence] = self._pending.get(cadence, []), []
        decoded = self._decoded.setdefault(cadence, [])
        for now_ms, captures in pending:
            for collector, captured in captures:
                try:
                    decoded.extend(collector.decode(captured, now_ms))
                except Exception as exc:  # as in sample_collectors: this collector's reading only
                    warn_failed(self._warn, collector, exc)

    def close(self) -> None:
        """Release the collectors (NVML)."""
        with self._lock:
            for collectors in self._collectors.values():
                close_collectors(collectors)
