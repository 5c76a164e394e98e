"""Network I/O rates from ``/proc/net/dev``.

Reads: ``<procfs_root>/net/dev`` each sample (the network namespace of the reader: inside a
container, the container's interfaces).

Feeds: ``sys.network.send_bps`` and ``sys.network.receive_bps`` (Comet's names; see
``comet_agent/delivery/payloads.py``).

All interfaces except loopback (``lo``) are summed: traffic between local processes is not
network traffic. Rates need two readings: the first sample returns nothing. An interface that
appears or disappears between readings is left out of that interval; if any counter went
backwards (driver reload, 32-bit wrap) the interval gives no rate rather than a negative one.

Absent source: an unreadable ``net/dev`` raises ``Unavailable`` from the constructor.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional, Sequence

from comet_agent.collectors import Unavailable
from comet_agent.records import NetworkSample
from comet_agent.sources import procfs

LOOPBACK_INTERFACE = "lo"


class NetworkCollector:
    """Periodic collector of bytes sent and received per second (``NetworkSample``), cadence ``"cpu"``.

    Args:
        procfs_root: the ``/proc`` tree to read.
        clock: monotonic clock in seconds, for rates.

    Raises:
        Unavailable: ``<procfs_root>/net/dev`` cannot be read.
    """

    name = "network"
    cadence = "cpu"

    def __init__(self, *, procfs_root: str = "/proc", clock: Callable[[], float] = time.monotonic):
        self._procfs_root = procfs_root
        self._clock = clock
        try:
            procfs.read_net_dev(procfs_root)
        except OSError as exc:
            raise Unavailable(f"cannot read {os.path.join(procfs_root, 'net', 'dev')}: {exc.strerror or exc}") from exc
        self._previous: Optional[tuple[dict[str, procfs.NetworkCounters], float]] = None

    def sample(self, now_ms: int) -> Sequence[NetworkSample]:
        """Return the rates since the previous call; nothing on the first call."""
        return self.decode(self.capture(), now_ms)

    def capture(self) -> tuple[str, float]:
        """Read ``net/dev`` now, parse nothing (``decode`` does, later, in capture order)."""
        return procfs.read_host_file(self._procfs_root, "net", "dev"), self._clock()

    def decode(self, captured: tuple[str, float], now_ms: int) -> Sequence[NetworkSample]:
        """The rates between the capture decoded before and this one; nothing for the first."""
        text, now_s = captured
        counters = procfs.parse_net_dev(text)
        counters.pop(LOOPBACK_INTERFACE, None)
        previous, self._previous = self._previous, (counters, now_s)
        if previous is None:
            return []
        previous_counters, previous_s = previous
        wall_delta_s = now_s - previous_s
        if wall_delta_s <= 0:
            return []
        received_delta_bytes = sent_delta_bytes = 0
        for interface in counters.keys() & previous_counters.keys():
            received_delta = counters[interface].received_bytes - previous_counters[interface].received_bytes
            sent_delta = counters[interface].sent_bytes - previous_counters[interface].sent_bytes
            if received_delta < 0 or sent_delta < 0:
                return []  # counter reset or wrap: no honest rate for this interval
            received_delta_bytes += received_delta
            sent_delta_bytes += sent_delta
        return [
            NetworkSample(
                sent_bytes_per_s=sent_delta_bytes / wall_delta_s,
                received_bytes_per_s=received_delta_bytes / wall_delta_s,
                taken_at_ms=now_ms,
            )
        ]

    def close(self) -> None:
        """Forget the previous reading (nothing to release)."""
        self._previous = None
