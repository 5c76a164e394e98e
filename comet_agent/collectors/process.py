"""The watched job's process tree: CPU, memory, threads, open files and GPU memory.

Reads: the watched pid's descendants through ``<procfs_root>/<pid>/task/<tid>/children`` where
the kernel has those files (``CONFIG_PROC_CHILDREN``, every mainstream distribution kernel), so the
cost follows the tree and not the host; elsewhere ``<procfs_root>/<pid>/stat`` of every process
(parent pids). Every thread's ``children`` file is read on one sample in ten
(``procfs.ForkingThreads``), and in between only the main thread's and those of threads seen
forking, so a training process's dozens of pool threads do not cost a read each per sample; a
child of a thread never seen forking before shows up within ten samples. Then ``<procfs_root>/<pid>/stat`` and ``<procfs_root>/<pid>/fd`` of the tree's
processes, each once per sample, and, when NVML is available, per-process GPU memory and SM
utilisation through ``comet_agent.sources.nvml.gpu_memory_by_pid`` and ``gpu_utilization_reader``.

Feeds: our ``sys.proc.*`` metrics (``sys.proc.cpu.percent``, ``sys.proc.rss``, ``sys.proc.threads``,
``sys.proc.open_files``, ``sys.proc.count``, ``sys.proc.gpu.<i>.used_memory``,
``sys.proc.gpu.<i>.utilization``; see
``comet_agent/delivery/payloads.py``).

The whole tree counts, not only the main process: DataLoader workers and other children are
where much of a job's CPU and memory goes. CPU percent is summed over the tree (200 means two
CPUs busy) from user + system time deltas; a process seen for the first time contributes all its
CPU time (it was started during the interval: a new child begins at zero), and the last interval
of a process that exited between two samples is lost (its time is folded into its parent's
reaped-children counters, which we do not read to avoid counting it twice). Processes are keyed
by pid and start time, so a reused pid is a new process. The first sample has ``cpu_percent``
``None``: a rate needs two readings. GPU pids are matched as NVML reports them; inside a
container with its own pid namespace NVML's host pids do not match and the GPU map stays empty.

Absent source: a pid that does not exist at construction raises ``Unavailable``; when the
watched process exits later, ``sample()`` returns nothing (logged once).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from comet_agent.collectors import Unavailable
from comet_agent.records import ProcessTreeSample
from comet_agent.sources import procfs

logger = logging.getLogger(__name__)

GpuMemoryByPid = Callable[[], Mapping[int, Mapping[int, int]]]
#: ``{pid: {visible GPU index: SM utilisation percent}}`` since the previous call (``nvml.gpu_utilization_reader``).
GpuUtilizationByPid = Callable[[], Mapping[int, Mapping[int, float]]]


def _load_nvml_gpu_memory_by_pid() -> Optional[GpuMemoryByPid]:
    try:
        from comet_agent.sources.nvml import gpu_memory_by_pid
    except ImportError as exc:  # NVML gateway missing or pynvml not installed
        logger.debug("process: no per-process GPU memory: %s", exc)
        return None
    return gpu_memory_by_pid


def _load_nvml_gpu_utilization_by_pid() -> Optional[GpuUtilizationByPid]:
    try:
        from comet_agent.sources.nvml import gpu_utilization_reader
    except ImportError:
        return None  # said once already by the memory source's loader
    return gpu_utilization_reader()


class ProcessTreeCollector:
    """Periodic collector of the watched process tree's resources (``ProcessTreeSample``).

    Args:
        pid: the watched process (the root of the tree).
        procfs_root: the ``/proc`` tree to read.
        clock: monotonic clock in seconds, for CPU rates.
        gpu_memory_by_pid: returns ``{pid: {visible GPU index: used bytes}}``; defaults to the
            NVML gateway, loaded on first use (``{}`` when NVML is unavailable).
        gpu_utilization_by_pid: returns ``{pid: {visible GPU index: SM percent}}``; defaults to the
            NVML gateway when ``gpu_memory_by_pid`` is not given either, else to none.
        clock_ticks_per_s: kernel USER_HZ, the unit of CPU times in ``stat``.
        page_size_bytes: the unit of ``rss`` in ``stat``.
        full_children_every: every how many samples every thread's ``children`` file is read
            (``procfs.ForkingThreads``); in between, only the threads seen forking.

    Raises:
        Unavailable: no process ``pid`` under ``procfs_root``.
    """

    name = "process"
    cadence = "cpu"

    def __init__(
        self,
        pid: int,
        *,
        procfs_root: str = "/proc",
        clock: Callable[[], float] = time.monotonic,
        gpu_memory_by_pid: Optional[GpuMemoryByPid] = None,
        gpu_utilization_by_pid: Optional[GpuUtilizationByPid] = None,
        clock_ticks_per_s: int = procfs.CLOCK_TICKS_PER_S,
        page_size_bytes: int = procfs.PAGE_SIZE_BYTES,
        full_children_every: int = procfs.FULL_CHILDREN_EVERY,
    ):
        self._root_pid = pid
        self._procfs_root = procfs_root
        self._clock = clock
        self._clock_ticks_per_s = clock_ticks_per_s
        self._page_size_bytes = page_size_bytes
        try:
            self._root_start_ticks = procfs.read_pid_stat(procfs_root, pid).start_ticks
        except (OSError, ValueError) as exc:
            raise Unavailable(f"no process {pid} under {procfs_root}") from exc
        self.walk = procfs.tree_walk_for(procfs_root, pid)
        self._files = procfs.KernelFiles(procfs_root)  # the tree's files, read every tick
        self._forking = procfs.ForkingThreads(full_children_every)  # most ticks read forking threads only
        self._gpu_memory_by_pid = gpu_memory_by_pid
        self._gpu_utilization_by_pid = gpu_utilization_by_pid
        # Given sources are used as given (a test's recorded GPUs); otherwise NVML, on first use.
        self._gpu_source_loaded = gpu_memory_by_pid is not None or gpu_utilization_by_pid is not None
        self._gpu_failure_logged = False
        self._exit_logged = False
        self._previous: Optional[tuple[dict[tuple[int, int], int], float]] = None

    def _gpu_figures(self, tree_pids: set[int]) -> tuple[dict[int, int], dict[int, float]]:
        """The tree's GPU memory and SM utilisation, each summed per visible GPU index."""
        if not self._gpu_source_loaded:
            self._gpu_memory_by_pid = _load_nvml_gpu_memory_by_pid()
            self._gpu_utilization_by_pid = _load_nvml_gpu_utilization_by_pid()
            self._gpu_source_loaded = True
        return (
            self._summed_per_gpu(self._gpu_memory_by_pid, tree_pids),
            self._summed_per_gpu(self._gpu_utilization_by_pid, tree_pids),
        )

    def _summed_per_gpu(
        self, source: Optional[Callable[[], Mapping[int, Mapping[int, Any]]]], tree_pids: set[int]
    ) -> dict:
        if source is None:
            return {}
        try:
            by_pid = source()
        except Exception as exc:  # an NVML failure must not cost the CPU and memory figures
            if not self._gpu_failure_logged:
                self._gpu_failure_logged = True
                logger.info("process: per-process GPU figures unavailable: %s", exc)
            return {}
        totals: dict[int, Any] = {}
        for pid in tree_pids & set(by_pid):
            for gpu_index, value in by_pid[pid].items():
                totals[gpu_index] = totals.get(gpu_index, 0) + value
        return dict(sorted(totals.items()))

    def _open_file_count(self, tree_pids: set[int]) -> Optional[int]:
        total = 0
        for pid in tree_pids:
            try:
                total += procfs.read_open_file_count(self._procfs_root, pid)
            except FileNotFoundError:
                continue  # exited since the walk
            except OSError:
                return None  # another user's process: a partial count would mislead
        return total

    def sample(self, now_ms: int) -> Sequence[ProcessTreeSample]:
        """Return one ``ProcessTreeSample``; nothing once the watched process has exited."""
        try:
            tree = procfs.read_process_tree(
                self._procfs_root, self._root_pid, walk=self.walk, files=self._files, forking=self._forking
            )
        except FileNotFoundError:  # the root exited between its stat and its children
            tree = None
        now_s = self._clock()
        if tree is None or tree[self._root_pid].start_ticks != self._root_start_ticks:
            if not self._exit_logged:
                self._exit_logged = True
                logger.info("process: watched process %d has exited", self._root_pid)
            self._previous = None
            return []
        cpu_ticks_by_process = {(stat.pid, stat.start_ticks): stat.cpu_ticks for stat in tree.values()}
        previous, self._previous = self._previous, (cpu_ticks_by_process, now_s)

        cpu_percent: Optional[float] = None
        if previous is not None and now_s > previous[1]:
            previous_ticks, previous_s = previous
            delta_ticks = 0
            for key, ticks in cpu_ticks_by_process.items():
                # A process's own CPU time never decreases; max() guards a torn read.
                delta_ticks += max(0, ticks - previous_ticks.get(key, 0))
            cpu_percent = 100.0 * delta_ticks / self._clock_ticks_per_s / (now_s - previous_s)

        tree_pids = set(tree)
        gpu_memory, gpu_utilization = self._gpu_figures(tree_pids)
        return [
            ProcessTreeSample(
                root_pid=self._root_pid,
                process_count=len(tree),
                cpu_percent=cpu_percent,
                rss_bytes=sum(stat.rss_pages for stat in tree.values()) * self._page_size_bytes,
                threads=sum(stat.threads for stat in tree.values()),
                open_files=self._open_file_count(tree_pids),
                gpu_memory_used_bytes_by_index=gpu_memory,
                gpu_utilization_percent_by_index=gpu_utilization,
                taken_at_ms=now_ms,
            )
        ]

    def close(self) -> None:
        """Forget the previous reading and close the tree's files."""
        self._previous = None
        self._files.close()
