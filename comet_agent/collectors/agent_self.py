"""The agent's own CPU and resident memory, so that it reports its own overhead.

Reads: ``<procfs_root>/<agent pid>/stat`` each sample; in-process (``threads`` given), the CPU
clock of each of the agent's own threads instead (``procfs.thread_cpu_time_ns``: one syscall
each, in nanoseconds), or their ``<procfs_root>/<agent pid>/task/<tid>/stat`` under a fixture tree.

Feeds: our ``sys.agent.cpu.percent`` and ``sys.agent.rss`` metrics (see
``comet_agent/delivery/payloads.py``).

CPU percent covers all the agent's threads (user + system time) over the interval; it is
``None`` on the first sample, since a rate needs two readings.

In-process (``comet_agent.monitor()`` or an ``Agent`` in training code) the process is the
training job's: its CPU and memory are the job's, not the agent's. There the collector sums the
CPU time of the agent's own threads (every thread the agent starts is named ``comet-agent-*``;
``agent_thread_ids``): a thread seen for the first time counts all its CPU time, a thread that
ended since the last sample loses its last interval. Memory is not reported in-process
(``rss_bytes`` is ``None``): the agent's allocations share the job's heap, and ``/proc`` cannot
tell them apart.

Absent source: an unreadable ``stat`` raises ``Unavailable`` from the constructor.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, Optional, Sequence, Union

from comet_agent.collectors import Unavailable
from comet_agent.records import AgentSelfSample
from comet_agent.sources import procfs

#: Every thread the agent starts carries this name prefix (scheduler, sender, worker, static
#: snapshot, embedded server, Prometheus page, ...).
AGENT_THREAD_PREFIX = "comet-agent"


def agent_thread_ids() -> list[int]:
    """The kernel thread ids of this process's comet-agent threads."""
    return [
        thread.native_id
        for thread in threading.enumerate()
        if thread.name.startswith(AGENT_THREAD_PREFIX) and thread.native_id is not None
    ]


class AgentSelfCollector:
    """Periodic collector of the agent's own cost (``AgentSelfSample``), cadence ``"cpu"``.

    Args:
        procfs_root: the ``/proc`` tree to read.
        pid: the agent's pid (default: this process).
        clock: monotonic clock in seconds, for the CPU rate.
        clock_ticks_per_s: kernel USER_HZ, the unit of CPU times in ``stat``.
        page_size_bytes: the unit of ``rss`` in ``stat``.
        threads: in-process, returns the agent's own thread ids (``agent_thread_ids``): CPU is
            theirs, memory is not reported. None: the whole process is the agent's.

    Raises:
        Unavailable: ``<procfs_root>/<pid>/stat`` cannot be read.
    """

    name = "agent_self"
    cadence = "cpu"

    def __init__(
        self,
        *,
        procfs_root: str = "/proc",
        pid: Optional[int] = None,
        clock: Callable[[], float] = time.monotonic,
        clock_ticks_per_s: int = procfs.CLOCK_TICKS_PER_S,
        page_size_bytes: int = procfs.PAGE_SIZE_BYTES,
        threads: Optional[Callable[[], Sequence[int]]] = None,
    ):
        self._procfs_root = procfs_root
        self._pid = os.getpid() if pid is None else pid
        self._clock = clock
        self._clock_ticks_per_s = clock_ticks_per_s
        self._page_size_bytes = page_size_bytes
        self._threads = threads
        try:
            procfs.read_pid_stat(procfs_root, self._pid)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"cannot read {os.path.join(procfs_root, str(self._pid), 'stat')}: {exc}") from exc
        self._previous: Optional[tuple[dict[tuple[int, int], float], float]] = None
        self._files = procfs.KernelFiles(procfs_root)  # the stat files read every tick
        self._stat_path = os.path.join(procfs_root, str(self._pid), "stat")
        # Our own threads on the live kernel: their CPU clocks, not their stat text.
        self._thread_clocks = threads is not None and self._pid == os.getpid() and procfs.is_live_procfs(procfs_root)

    def sample(self, now_ms: int) -> Sequence[AgentSelfSample]:
        """Return one ``AgentSelfSample``; ``cpu_percent`` is ``None`` on the first call."""
        return self.decode(self.capture(), now_ms)

    def capture(self) -> tuple[Union[list[bytes], dict[int, int]], float]:
        """Read the ``stat`` files (or the threads' CPU clocks) now; ``decode`` parses, later, in order."""
        if self._threads is None:
            return [self._files.read(self._stat_path)], self._clock()
        if self._thread_clocks:
            clocks_ns: dict[int, int] = {}
            for tid in self._threads():
                try:
                    clocks_ns[tid] = procfs.thread_cpu_time_ns(tid)
                except OSError:
                    continue  # the thread ended since it was listed
            return clocks_ns, self._clock()
        stats = []
        for tid in self._threads():
            try:
                stats.append(self._files.read(f"{self._procfs_root}/{self._pid}/task/{tid}/stat"))
            except (FileNotFoundError, ProcessLookupError):
                continue  # the thread ended since it was listed
        self._files.sweep()  # close the files of threads that ended
        return stats, self._clock()

    def decode(
        self, captured: tuple[Union[list[bytes], dict[int, int]], float], now_ms: int
    ) -> Sequence[AgentSelfSample]:
        """The ``AgentSelfSample`` of one capture (CPU against the capture decoded before it)."""
        data, now_s = captured
        stats = []
        cpu_s: dict[tuple[int, int], float]
        if isinstance(data, dict):  # thread id -> CPU clock (ns); a reused tid is negligible here
            cpu_s = {(tid, 0): clock_ns / 1e9 for tid, clock_ns in data.items()}
        else:
            stats = [procfs.parse_pid_stat(item.decode("ascii", "replace")) for item in data]
            cpu_s = {(stat.pid, stat.start_ticks): stat.cpu_ticks / self._clock_ticks_per_s for stat in stats}
        previous, self._previous = self._previous, (cpu_s, now_s)
        cpu_percent: Optional[float] = None
        if previous is not None and now_s > previous[1]:
            previous_cpu_s, previous_s = previous
            # A thread (or process) seen for the first time started during the interval: all its
            # time counts. Its own CPU time never decreases; max() guards a torn read.
            delta_s = sum(max(0.0, value - previous_cpu_s.get(key, 0.0)) for key, value in cpu_s.items())
            cpu_percent = 100.0 * delta_s / (now_s - previous_s)
        rss_bytes = None
        if self._threads is None and stats:
            rss_bytes = stats[0].rss_pages * self._page_size_bytes
        return [AgentSelfSample(pid=self._pid, cpu_percent=cpu_percent, rss_bytes=rss_bytes, taken_at_ms=now_ms)]

    def close(self) -> None:
        """Forget the previous reading and close the kept files."""
        self._previous = None
        self._files.close()
