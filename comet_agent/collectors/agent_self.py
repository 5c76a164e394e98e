"""The agent's own CPU and resident memory, so that it reports its own overhead.

Reads: ``<procfs_root>/<agent pid>/stat`` each sample.

Feeds: our ``sys.agent.cpu.percent`` and ``sys.agent.rss`` metrics (see
``comet_agent/delivery/payloads.py``).

CPU percent covers all the agent's threads (user + system time) over the interval; it is
``None`` on the first sample, since a rate needs two readings.

Absent source: an unreadable ``stat`` raises ``Unavailable`` from the constructor.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional, Sequence

from comet_agent.collectors import Unavailable
from comet_agent.records import AgentSelfSample
from comet_agent.sources import procfs


class AgentSelfCollector:
    """Periodic collector of the agent's own cost (``AgentSelfSample``), cadence ``"cpu"``.

    Args:
        procfs_root: the ``/proc`` tree to read.
        pid: the agent's pid (default: this process).
        clock: monotonic clock in seconds, for the CPU rate.
        clock_ticks_per_s: kernel USER_HZ, the unit of CPU times in ``stat``.
        page_size_bytes: the unit of ``rss`` in ``stat``.

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
    ):
        self._procfs_root = procfs_root
        self._pid = os.getpid() if pid is None else pid
        self._clock = clock
        self._clock_ticks_per_s = clock_ticks_per_s
        self._page_size_bytes = page_size_bytes
        try:
            procfs.read_pid_stat(procfs_root, self._pid)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"cannot read {os.path.join(procfs_root, str(self._pid), 'stat')}: {exc}") from exc
        self._previous: Optional[tuple[int, float]] = None
        self._files = procfs.KernelFiles(procfs_root)  # its stat, read every tick
        self._stat_path = os.path.join(procfs_root, str(self._pid), "stat")

    def sample(self, now_ms: int) -> Sequence[AgentSelfSample]:
        """Return one ``AgentSelfSample``; ``cpu_percent`` is ``None`` on the first call."""
        return self.decode(self.capture(), now_ms)

    def capture(self) -> tuple[bytes, float]:
        """Read the agent's ``stat`` now, parse nothing (``decode`` does, later, in capture order)."""
        return self._files.read(self._stat_path), self._clock()

    def decode(self, captured: tuple[bytes, float], now_ms: int) -> Sequence[AgentSelfSample]:
        """The ``AgentSelfSample`` of one capture (CPU against the capture decoded before it)."""
        data, now_s = captured
        stat = procfs.parse_pid_stat(data.decode("ascii", "replace"))
        previous, self._previous = self._previous, (stat.cpu_ticks, now_s)
        cpu_percent: Optional[float] = None
        if previous is not None and now_s > previous[1] and stat.cpu_ticks >= previous[0]:
            cpu_percent = 100.0 * (stat.cpu_ticks - previous[0]) / self._clock_ticks_per_s / (now_s - previous[1])
        return [
            AgentSelfSample(
                pid=self._pid,
                cpu_percent=cpu_percent,
                rss_bytes=stat.rss_pages * self._page_size_bytes,
                taken_at_ms=now_ms,
            )
        ]

    def close(self) -> None:
        """Forget the previous reading and close the kept file."""
        self._previous = None
        self._files.close()
