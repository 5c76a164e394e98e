"""Disk I/O rates from ``/proc/diskstats`` and filesystem usage from ``statvfs``.

Reads: ``<procfs_root>/diskstats`` each sample, ``<sysfs_root>/block`` once (which devices are
physical whole disks), and ``statvfs`` of ``/`` and of the job's working directory each sample.

Feeds: ``sys.disk.read_bps``, ``sys.disk.write_bps``, ``sys.disk.root.used``,
``sys.disk.root.percent.used`` (Comet's names) and ``sys.disk.job.used``,
``sys.disk.job.percent.used`` (ours; see ``comet_agent/delivery/payloads.py``).

Which devices count: only physical whole disks, so that a write through a partition, LVM (dm-*),
RAID (md*) or a loop device is counted once, on the disk beneath. With ``/sys/block`` readable,
a whole disk is an entry there with a ``device`` link (sda, nvme0n1, vda, xvda); without it, the
name rule of ``procfs.is_whole_disk_name`` applies (no partition suffix, not a virtual device).

Rates need two readings: the first sample carries usage only. A disk that appears or disappears
between readings is left out of that interval; if any counter went backwards (reboot, wrap,
device replaced) the interval gives no rate at all rather than a negative or partial one.

Absent source: without ``diskstats`` only usage is reported (logged once); a directory whose
``statvfs`` fails is skipped (logged once). If neither I/O nor ``/`` can be read the
constructor raises ``Unavailable``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable, Optional, Sequence, Union

from comet_agent.collectors import Unavailable
from comet_agent.records import DiskIoSample, DiskUsageSample
from comet_agent.sources import procfs

logger = logging.getLogger(__name__)


def disk_usage_sample(role: str, path: str, stat: os.statvfs_result, taken_at_ms: int) -> DiskUsageSample:
    """Turn a ``statvfs`` result into a ``DiskUsageSample`` (same arithmetic as ``df`` and psutil).

    ``free_bytes`` is what unprivileged users may still write (``f_bavail``); ``used_percent`` is
    used / (used + free), so the blocks reserved for root do not count as free.
    """
    total_bytes = stat.f_blocks * stat.f_frsize
    free_bytes = stat.f_bavail * stat.f_frsize
    used_bytes = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    denominator_bytes = used_bytes + free_bytes
    used_percent = 100.0 * used_bytes / denominator_bytes if denominator_bytes else 0.0
    return DiskUsageSample(
        role=role,
        path=path,
        total_bytes=total_bytes,
        used_bytes=used_bytes,
        free_bytes=free_bytes,
        used_percent=used_percent,
        taken_at_ms=taken_at_ms,
    )


class DiskCollector:
    """Periodic collector of disk I/O rates (``DiskIoSample``) and usage (``DiskUsageSample``).

    Args:
        procfs_root: the ``/proc`` tree to read ``diskstats`` from.
        sysfs_root: the ``/sys`` tree whose ``block`` folder tells whole disks apart.
        directory: the job's working directory; its filesystem's usage is reported as ``"job"``.
        root_path: the path reported as ``"root"`` (``/``).
        statvfs: the ``os.statvfs`` function (tests pass recorded results).
        clock: monotonic clock in seconds, for rates.

    Raises:
        Unavailable: neither ``diskstats`` nor ``statvfs(root_path)`` can be read.
    """

    name = "disk"
    cadence = "cpu"

    def __init__(
        self,
        *,
        procfs_root: str = "/proc",
        sysfs_root: str = "/sys",
        directory: Optional[Union[str, os.PathLike]] = None,
        root_path: str = "/",
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._procfs_root = procfs_root
        self._statvfs = statvfs
        self._clock = clock
        self._usage_paths: list[tuple[str, str]] = [("root", root_path)]
        if directory is not None:
            self._usage_paths.append(("job", os.path.abspath(os.fspath(directory))))
        self._failed_usage_paths: set[str] = set()
        self._whole_disk_names = procfs.read_whole_disk_names(sysfs_root)
        self._io_available = True
        io_error = root_error = None
        try:
            procfs.read_diskstats(procfs_root)
        except OSError as exc:
            self._io_available = False
            io_error = exc
        try:
            statvfs(root_path)
        except OSError as exc:
            root_error = exc
        if not self._io_available and root_error is not None:
            raise Unavailable(f"no disk I/O ({io_error}) and no usage of {root_path} ({root_error})")
        if not self._io_available:
            logger.info("disk: I/O rates unavailable (%s); reporting usage only", io_error)
        self._previous: Optional[tuple[dict[str, procfs.DiskCounters], float]] = None

    def _is_counted(self, name: str) -> bool:
        if self._whole_disk_names is not None:
            return name in self._whole_disk_names
        return procfs.is_whole_disk_name(name)

    def _io_sample(self, text: str, now_s: float, now_ms: int) -> Optional[DiskIoSample]:
        counters = {name: value for name, value in procfs.parse_diskstats(text).items() if self._is_counted(name)}
        previous, self._previous = self._previous, (counters, now_s)
        if previous is None:
            return None
        previous_counters, previous_s = previous
        wall_delta_s = now_s - previous_s
        if wall_delta_s <= 0:
            return None
        read_delta_bytes = written_delta_bytes = 0
        for name in counters.keys() & previous_counters.keys():
            read_delta = counters[name].read_bytes - previous_counters[name].read_bytes
            written_delta = counters[name].written_bytes - previous_counters[name].written_bytes
            if read_delta < 0 or written_delta < 0:
                return None  # counter reset or wrap: no honest rate for this interval
            read_delta_bytes += read_delta
            written_delta_bytes += written_delta
        return DiskIoSample(
            read_bytes_per_s=read_delta_bytes / wall_delta_s,
            write_bytes_per_s=written_delta_bytes / wall_delta_s,
            taken_at_ms=now_ms,
        )

    def sample(self, now_ms: int) -> Sequence[Union[DiskIoSample, DiskUsageSample]]:
        """Return the I/O rates since the previous call (from the second call on) and current usage."""
        return self.decode(self.capture(), now_ms)

    def capture(self) -> tuple[Optional[str], float, list[tuple[str, str, Union[os.statvfs_result, OSError]]]]:
        """Read ``diskstats`` and the filesystems' usage now, parse nothing (``decode`` does, later)."""
        text = procfs.read_host_file(self._procfs_root, "diskstats") if self._io_available else None
        now_s = self._clock()
        usages: list[tuple[str, str, Union[os.statvfs_result, OSError]]] = []
        for role, path in self._usage_paths:
            try:
                usages.append((role, path, self._statvfs(path)))
            except OSError as exc:
                usages.append((role, path, exc))
        return text, now_s, usages

    def decode(
        self,
        captured: tuple[Optional[str], float, list[tuple[str, str, Union[os.statvfs_result, OSError]]]],
        now_ms: int,
    ) -> Sequence[Union[DiskIoSample, DiskUsageSample]]:
        """The I/O rates against the capture decoded before this one, and the usage captured."""
        text, now_s, usages = captured
        samples: list[Union[DiskIoSample, DiskUsageSample]] = []
        if text is not None:
            io_sample = self._io_sample(text, now_s, now_ms)
            if io_sample is not None:
                samples.append(io_sample)
        for role, path, usage in usages:
            if isinstance(usage, OSError):
                if path not in self._failed_usage_paths:
                    self._failed_usage_paths.add(path)
                    logger.info("disk: no usage for %s (%s): %s", role, path, usage)
                continue
            samples.append(disk_usage_sample(role, path, usage, now_ms))
        return samples

    def close(self) -> None:
        """Forget the previous reading (nothing to release)."""
        self._previous = None


class DirectoryUsageCollector:
    """Usage of the filesystem that holds one job's working directory (``sys.disk.job.*``).

    The job-specific half of disk usage: the host-wide ``DiskCollector`` (I/O rates, ``/``) is
    sampled once per host, this one once per job. A directory whose ``statvfs`` fails yields
    nothing (logged once).
    """

    name = "job_disk"
    cadence = "cpu"

    def __init__(self, directory: Union[str, os.PathLike], *, statvfs: Callable[[str], os.statvfs_result] = os.statvfs):
        self._path = os.path.abspath(os.fspath(directory))
        self._statvfs = statvfs
        self._failed = False

    def sample(self, now_ms: int) -> Sequence[DiskUsageSample]:
        """The directory's filesystem usage now."""
        try:
            return [disk_usage_sample("job", self._path, self._statvfs(self._path), now_ms)]
        except OSError as exc:
            if not self._failed:
                self._failed = True
                logger.info("disk: no usage for the job directory %s: %s", self._path, exc)
            return []

    def close(self) -> None:
        """Nothing to release."""
