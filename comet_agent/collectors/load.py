"""Load averages from ``/proc/loadavg``.

Reads: ``<procfs_root>/loadavg`` each sample.

Feeds: ``sys.load.avg`` (1 minute, Comet's name), ``sys.load.avg5`` and ``sys.load.avg15`` (our
extension), and ``log_load_metrics`` (see ``comet_agent/delivery/payloads.py``).

Absent source: an unreadable ``loadavg`` raises ``Unavailable`` from the constructor.
"""

from __future__ import annotations

import os
from typing import Sequence

from comet_agent.collectors import Unavailable
from comet_agent.records import LoadSample
from comet_agent.sources import procfs


class LoadCollector:
    """Periodic collector of the 1-, 5- and 15-minute load averages (``LoadSample``), cadence ``"cpu"``.

    Args:
        procfs_root: the ``/proc`` tree to read.

    Raises:
        Unavailable: ``<procfs_root>/loadavg`` is unreadable or malformed.
    """

    name = "load"
    cadence = "cpu"

    def __init__(self, *, procfs_root: str = "/proc"):
        self._procfs_root = procfs_root
        try:
            procfs.read_loadavg(procfs_root)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"cannot read {os.path.join(procfs_root, 'loadavg')}: {exc}") from exc

    def sample(self, now_ms: int) -> Sequence[LoadSample]:
        """Return one ``LoadSample`` read now."""
        return self.decode(self.capture(), now_ms)

    def capture(self) -> str:
        """Read ``loadavg`` now, parse nothing (``decode`` does, later)."""
        return procfs.read_host_file(self._procfs_root, "loadavg")

    def decode(self, captured: str, now_ms: int) -> Sequence[LoadSample]:
        """The ``LoadSample`` of one capture."""
        load_1m, load_5m, load_15m = procfs.parse_loadavg(captured)
        return [LoadSample(load_1m=load_1m, load_5m=load_5m, load_15m=load_15m, taken_at_ms=now_ms)]

    def close(self) -> None:
        """Nothing to release."""
