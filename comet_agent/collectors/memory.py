"""Memory and swap from ``/proc/meminfo``.

Reads: ``<procfs_root>/meminfo`` each sample.

Feeds: ``sys.ram.total``, ``sys.ram.used``, ``sys.ram.available``, ``sys.ram.percent.used`` (Comet's
names), our ``sys.swap.*`` metrics, and ``log_ram_metrics`` with the per-kind endpoints option (see
``comet_agent/delivery/payloads.py``).

``used`` is total minus available, as Comet's SDK computes it (``MemAvailable`` counts reclaimable
page cache as available). Kernels before 3.14 have no ``MemAvailable``; there we estimate it as
free + buffers + cached, as ``free(1)`` did then.

Absent source: no readable ``meminfo`` with ``MemTotal`` raises ``Unavailable`` from the constructor.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from comet_agent.collectors import Unavailable
from comet_agent.records import MemorySample
from comet_agent.sources import procfs


def memory_sample_from_meminfo(meminfo: dict[str, int], taken_at_ms: int) -> MemorySample:
    """Build a ``MemorySample`` from parsed ``meminfo`` values (bytes).

    Raises:
        ValueError: ``MemTotal`` is missing or zero.
    """
    total_bytes = meminfo.get("MemTotal", 0)
    if total_bytes <= 0:
        raise ValueError("meminfo has no MemTotal")
    available_bytes = meminfo.get("MemAvailable")
    if available_bytes is None:
        available_bytes = meminfo.get("MemFree", 0) + meminfo.get("Buffers", 0) + meminfo.get("Cached", 0)
    available_bytes = min(available_bytes, total_bytes)
    used_bytes = total_bytes - available_bytes
    swap_total_bytes = meminfo.get("SwapTotal", 0)
    swap_used_bytes = max(0, swap_total_bytes - meminfo.get("SwapFree", 0))
    swap_used_percent: Optional[float] = 100.0 * swap_used_bytes / swap_total_bytes if swap_total_bytes else None
    return MemorySample(
        total_bytes=total_bytes,
        available_bytes=available_bytes,
        used_bytes=used_bytes,
        used_percent=100.0 * used_bytes / total_bytes,
        swap_total_bytes=swap_total_bytes,
        swap_used_bytes=swap_used_bytes,
        swap_used_percent=swap_used_percent,
        taken_at_ms=taken_at_ms,
    )


class MemoryCollector:
    """Periodic collector of memory and swap (``MemorySample``), cadence ``"cpu"``.

    Args:
        procfs_root: the ``/proc`` tree to read.

    Raises:
        Unavailable: ``<procfs_root>/meminfo`` is unreadable or has no ``MemTotal``.
    """

    name = "memory"
    cadence = "cpu"

    def __init__(self, *, procfs_root: str = "/proc"):
        self._procfs_root = procfs_root
        try:
            memory_sample_from_meminfo(procfs.read_meminfo(procfs_root), 0)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"cannot read memory from {os.path.join(procfs_root, 'meminfo')}: {exc}") from exc

    def sample(self, now_ms: int) -> Sequence[MemorySample]:
        """Return one ``MemorySample`` read now."""
        return self.decode(self.capture(), now_ms)

    def capture(self) -> str:
        """Read ``meminfo`` now, parse nothing (``decode`` does, later)."""
        return procfs.read_host_file(self._procfs_root, "meminfo")

    def decode(self, captured: str, now_ms: int) -> Sequence[MemorySample]:
        """The ``MemorySample`` of one capture."""
        return [memory_sample_from_meminfo(procfs.parse_meminfo_for_sample(captured), now_ms)]

    def close(self) -> None:
        """Nothing to release."""
