"""Linux ``/proc``, ``/sys/block`` and cgroup v2 readers for the periodic collectors.

Two layers, kept apart so tests can feed literal text or whole fixture trees:

- ``parse_<source>(text)``: pure functions from a file's text to plain values;
- ``read_<thing>(root, ...)``: open + read + parse, with the filesystem root passed in
  (``/proc``, ``/sys`` or ``/sys/fs/cgroup`` in production, a fixture tree in tests).

We read ``/proc`` directly rather than through psutil: fixture trees then drive every test, and a
periodic sample costs little more than the raw reads it needs (see ``bench/bench_periodic_sample.py``).
Readers raise ``OSError`` (usually ``FileNotFoundError``) when a file is absent; collectors turn that
into ``Unavailable`` or skip the vanished process. Nothing here runs a command.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

# /proc/diskstats counts 512-byte sectors whatever the device's real sector size
# (Documentation/admin-guide/iostats.rst; include/linux/types.h SECTOR_SHIFT).
DISKSTATS_SECTOR_BYTES = 512

#: Kernel clock ticks per second (USER_HZ), the unit of /proc/stat and /proc/<pid>/stat CPU times.
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: Page size in bytes, the unit of the rss field of /proc/<pid>/stat.
PAGE_SIZE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_text(path: str) -> str:
    """Return the whole text of a small kernel file (``/proc``, ``/sys``, cgroup).

    Raises:
        OSError: the file is absent or unreadable.
    """
    with open(path, encoding="ascii", errors="replace") as handle:
        return handle.read()


# ---------------------------------------------------------------------------------------------
# /proc/stat: CPU times
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU time of one CPU (or all), in clock ticks: busy and total (busy + idle)."""

    busy_ticks: int
    total_ticks: int


@dataclass(frozen=True)
class StatReading:
    """``/proc/stat`` CPU lines: the aggregate ``cpu`` line and one entry per online CPU number."""

    aggregate: Optional[CpuTimes]
    per_cpu: dict[int, CpuTimes]


def _cpu_times_from_fields(fields: list[str]) -> CpuTimes:
    # Field order: user nice system idle iowait irq softirq steal guest guest_nice.
    # guest and guest_nice are already counted inside user and nice, so they are left out of the
    # total (counting them twice would understate idle on hypervisors). iowait is idle time: the
    # CPU had nothing to run while waiting (as in top, psutil and node_exporter).
    values = [int(value) for value in fields[:8]]
    values += [0] * (8 - len(values))  # pre-2.6.11 kernels have fewer columns
    user, nice, system, idle, iowait, irq, softirq, steal = values
    idle_ticks = idle + iowait
    busy_ticks = user + nice + system + irq + softirq + steal
    return CpuTimes(busy_ticks=busy_ticks, total_ticks=busy_ticks + idle_ticks)


def parse_stat(text: str) -> StatReading:
    """Parse the ``cpu`` and ``cpuN`` lines of ``/proc/stat``.

    Args:
        text: the file's contents.

    Returns:
        A ``StatReading``; ``per_cpu`` holds only the CPUs listed (offline CPUs are absent).

    Raises:
        ValueError: a CPU line has non-numeric fields.
    """
    aggregate: Optional[CpuTimes] = None
    per_cpu: dict[int, CpuTimes] = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        label, *fields = line.split()
        if label == "cpu":
            aggregate = _cpu_times_from_fields(fields)
        elif label[3:].isdigit():
            per_cpu[int(label[3:])] = _cpu_times_from_fields(fields)
    return StatReading(aggregate=aggregate, per_cpu=per_cpu)


def read_stat(procfs_root: str = "/proc") -> StatReading:
    """Read and parse ``<procfs_root>/stat``. Raises ``OSError`` when absent."""
    return parse_stat(read_text(os.path.join(procfs_root, "stat")))


# ---------------------------------------------------------------------------------------------
# /proc/meminfo and /proc/loadavg
# ---------------------------------------------------------------------------------------------


def parse_meminfo(text: str) -> dict[str, int]:
    """Parse ``/proc/meminfo`` into ``{field: value}``; ``kB`` values are converted to bytes.

    Fields without a unit (``HugePages_Total``) are returned as plain counts.
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        multiplier = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
        values[name.strip()] = int(parts[0]) * multiplier
    return values


def read_meminfo(procfs_root: str = "/proc") -> dict[str, int]:
    """Read and parse ``<procfs_root>/meminfo`` (values in bytes). Raises ``OSError`` when absent."""
    return parse_meminfo(read_text(os.path.join(procfs_root, "meminfo")))


def parse_loadavg(text: str) -> tuple[float, float, float]:
    """Parse ``/proc/loadavg`` into the 1-, 5- and 15-minute load averages.

    Raises:
        ValueError: the file does not start with three numbers.
    """
    fields = text.split()
    if len(fields) < 3:
        raise ValueError(f"/proc/loadavg: expected three load averages, got {text[:80]!r}")
    return float(fields[0]), float(fields[1]), float(fields[2])


def read_loadavg(procfs_root: str = "/proc") -> tuple[float, float, float]:
    """Read and parse ``<procfs_root>/loadavg``. Raises ``OSError`` when absent."""
    return parse_loadavg(read_text(os.path.join(procfs_root, "loadavg")))


# ---------------------------------------------------------------------------------------------
# /proc/diskstats and /sys/block: disk I/O
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskCounters:
    """Cumulative bytes read and written by one block device since boot."""

    read_bytes: int
    written_bytes: int


def parse_diskstats(text: str) -> dict[str, DiskCounters]:
    """Parse ``/proc/diskstats`` into ``{device name: DiskCounters}`` for every listed device.

    Columns (after major, minor, name): reads completed, reads merged, sectors read, ms reading,
    writes completed, writes merged, sectors written, ... Sectors are 512 bytes.
    """
    devices: dict[str, DiskCounters] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        devices[fields[2]] = DiskCounters(
            read_bytes=int(fields[5]) * DISKSTATS_SECTOR_BYTES,
            written_bytes=int(fields[9]) * DISKSTATS_SECTOR_BYTES,
        )
    return devices


_VIRTUAL_DEVICE_PREFIXES = ("loop", "ram", "zram", "dm-", "md", "nbd")
_PARTITION_PATTERNS = (
    re.compile(r"^(nvme\d+n\d+|mmcblk\d+|nbd\d+|loop\d+)p\d+$"),  # nvme0n1p2, mmcblk0p1
    re.compile(r"^([shv]d[a-z]+|xvd[a-z]+)\d+$"),  # sda1, vdb2, xvda1
)


def is_whole_disk_name(name: str) -> bool:
    """Guess from its name alone whether a ``/proc/diskstats`` device is a physical whole disk.

    Used only when ``/sys/block`` cannot be read. Partitions (``sda1``, ``nvme0n1p2``) and
    stacked or memory-backed devices (``dm-0``, ``md0``, ``loop0``, ``zram0``) are excluded,
    because their I/O is already counted on the disk beneath them (or is not disk I/O at all).
    """
    if name.startswith(_VIRTUAL_DEVICE_PREFIXES):
        return False
    return not any(pattern.match(name) for pattern in _PARTITION_PATTERNS)


def read_whole_disk_names(sysfs_root: str = "/sys") -> Optional[frozenset[str]]:
    """Names of physical whole disks: entries of ``<sysfs_root>/block`` that have a ``device`` link.

    ``/sys/block`` lists whole block devices only (partitions live below them). Of those, the
    ones backed by hardware (sda, nvme0n1, vda, xvda) have a ``device`` entry; loop, dm, md, zram
    and ram devices do not, and are left out so that I/O through LVM or RAID is counted once.

    Returns:
        The names, or ``None`` when ``<sysfs_root>/block`` cannot be listed (the caller then
        falls back to ``is_whole_disk_name``).
    """
    block_dir = os.path.join(sysfs_root, "block")
    try:
        names = os.listdir(block_dir)
    except OSError:
        return None
    return frozenset(name for name in names if os.path.exists(os.path.join(block_dir, name, "device")))


def read_diskstats(procfs_root: str = "/proc") -> dict[str, DiskCounters]:
    """Read and parse ``<procfs_root>/diskstats``. Raises ``OSError`` when absent."""
    return parse_diskstats(read_text(os.path.join(procfs_root, "diskstats")))


# ---------------------------------------------------------------------------------------------
# /proc/net/dev: network I/O
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkCounters:
    """Cumulative bytes received and sent by one interface."""

    received_bytes: int
    sent_bytes: int


def parse_net_dev(text: str) -> dict[str, NetworkCounters]:
    """Parse ``/proc/net/dev`` into ``{interface: NetworkCounters}``, loopback included.

    The two header lines are skipped; the receive block has 8 columns, bytes first, and the
    transmit block follows with bytes first.
    """
    interfaces: dict[str, NetworkCounters] = {}
    for line in text.splitlines():
        name, separator, rest = line.partition(":")
        if not separator:
            continue
        fields = rest.split()
        if len(fields) < 9 or not fields[0].isdigit():
            continue
        interfaces[name.strip()] = NetworkCounters(received_bytes=int(fields[0]), sent_bytes=int(fields[8]))
    return interfaces


def read_net_dev(procfs_root: str = "/proc") -> dict[str, NetworkCounters]:
    """Read and parse ``<procfs_root>/net/dev``. Raises ``OSError`` when absent."""
    return parse_net_dev(read_text(os.path.join(procfs_root, "net", "dev")))


# ---------------------------------------------------------------------------------------------
# /proc/<pid>: processes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PidStat:
    """The fields of ``/proc/<pid>/stat`` the process collectors need.

    ``cpu_ticks`` is user + system time of the process itself (not of its reaped children);
    ``start_ticks`` is the start time after boot, which with the pid identifies a process across
    pid reuse; ``rss_pages`` is resident memory in pages.
    """

    pid: int
    command_name: str
    parent_pid: int
    cpu_ticks: int
    threads: int
    start_ticks: int
    rss_pages: int


def parse_pid_stat(text: str) -> PidStat:
    """Parse ``/proc/<pid>/stat``.

    The command name sits in parentheses and may itself contain spaces and ``)``, so the fields
    are split after the *last* ``)``.

    Raises:
        ValueError: the text is not a stat line.
    """
    open_paren = text.find("(")
    close_paren = text.rfind(")")
    if open_paren < 0 or close_paren < open_paren:
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}")
    # rest[0] is field 3 (state), so field N of proc(5) is rest[N - 3].
    rest = text[close_paren + 2 :].split()
    if len(rest) < 22:
        raise ValueError(f"/proc/<pid>/stat line too short: {text[:80]!r}")
    return PidStat(
        pid=int(text[:open_paren]),
        command_name=text[open_paren + 1 : close_paren],
        parent_pid=int(rest[1]),
        cpu_ticks=int(rest[11]) + int(rest[12]),
        threads=int(rest[17]),
        start_ticks=int(rest[19]),
        rss_pages=int(rest[21]),
    )


def read_pid_stat(procfs_root: str, pid: int) -> PidStat:
    """Read and parse ``<procfs_root>/<pid>/stat``. Raises ``OSError`` when the process is gone."""
    return parse_pid_stat(read_text(os.path.join(procfs_root, str(pid), "stat")))


def list_pids(procfs_root: str = "/proc") -> list[int]:
    """All process ids listed under ``procfs_root`` (its numeric entries)."""
    return [int(name) for name in os.listdir(procfs_root) if name.isdigit()]


def read_open_file_count(procfs_root: str, pid: int) -> int:
    """Number of open file descriptors of ``pid`` (entries of ``<procfs_root>/<pid>/fd``).

    Raises:
        PermissionError: another user's process, without CAP_SYS_PTRACE.
        FileNotFoundError: the process is gone.
    """
    return len(os.listdir(os.path.join(procfs_root, str(pid), "fd")))


# ---------------------------------------------------------------------------------------------
# cgroup v2: CPU quota and usage
# ---------------------------------------------------------------------------------------------


def parse_cgroup_v2_path(text: str) -> Optional[str]:
    """The cgroup v2 path from ``/proc/<pid>/cgroup`` (the ``0::<path>`` line), or ``None``."""
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return None


def parse_cpu_max(text: str) -> Optional[tuple[int, int]]:
    """Parse cgroup v2 ``cpu.max`` (``"<quota_us> <period_us>"`` or ``"max <period_us>"``).

    Returns:
        ``(quota_us, period_us)``, or ``None`` when no quota applies (``max``).

    Raises:
        ValueError: the text is not in either form.
    """
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    if len(fields) != 2:
        raise ValueError(f"cpu.max: expected '<quota> <period>', got {text[:80]!r}")
    return int(fields[0]), int(fields[1])


def parse_cpu_stat_usage_usec(text: str) -> int:
    """The ``usage_usec`` line of cgroup v2 ``cpu.stat`` (CPU time of the cgroup, microseconds).

    Raises:
        ValueError: no ``usage_usec`` line.
    """
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "usage_usec":
            return int(value)
    raise ValueError("cpu.stat has no usage_usec line")


@dataclass(frozen=True)
class CgroupCpuLimit:
    """The tightest CPU quota on a cgroup's path: where it is set and how many CPUs it allows."""

    directory: str
    quota_cpus: float


def find_cgroup_cpu_limit(cgroup_root: str, cgroup_path: str) -> Optional[CgroupCpuLimit]:
    """Find the tightest ``cpu.max`` quota from ``cgroup_path`` up to ``cgroup_root``.

    A quota on any ancestor caps the cgroup, and the smallest one binds (a Kubernetes pod-level
    limit above a container without one, for instance).

    Args:
        cgroup_root: where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup``).
        cgroup_path: the cgroup's path inside that hierarchy (``/`` inside a cgroup namespace).

    Returns:
        The limit and the directory that sets it, or ``None`` when no quota applies or the
        hierarchy is not cgroup v2.
    """
    root = os.path.normpath(cgroup_root)
    directory = os.path.normpath(os.path.join(root, cgroup_path.lstrip("/")))
    if not directory.startswith(root) or not os.path.isdir(directory):
        directory = root  # cgroup namespace or a path we cannot see: the visible root is ours
    tightest: Optional[CgroupCpuLimit] = None
    while True:
        try:
            quota = parse_cpu_max(read_text(os.path.join(directory, "cpu.max")))
        except (OSError, ValueError):
            quota = None
        if quota is not None and quota[1] > 0:
            quota_cpus = quota[0] / quota[1]
            if tightest is None or quota_cpus < tightest.quota_cpus:
                tightest = CgroupCpuLimit(directory=directory, quota_cpus=quota_cpus)
        if directory == root:
            return tightest
        directory = os.path.dirname(directory)


def read_cgroup_cpu_usage_usec(directory: str) -> int:
    """CPU time used by the cgroup at ``directory``, microseconds. Raises ``OSError``/``ValueError``."""
    return parse_cpu_stat_usage_usec(read_text(os.path.join(directory, "cpu.stat")))


def read_process_tree(procfs_root: str, root_pid: int) -> Optional[dict[int, PidStat]]:
    """Stats of ``root_pid`` and all its descendants, found by walking every ``<pid>/stat``.

    Walking parent pids works on every kernel (``/proc/<pid>/task/<tid>/children`` needs
    CONFIG_PROC_CHILDREN and one read per thread). Processes that vanish mid-walk are skipped.

    Returns:
        ``{pid: PidStat}`` with the root included, or ``None`` when the root process is gone.
    """
    stats: dict[int, PidStat] = {}
    for pid in list_pids(procfs_root):
        try:
            stats[pid] = read_pid_stat(procfs_root, pid)
        except (OSError, ValueError):
            continue  # exited between listdir and open
    if root_pid not in stats:
        return None
    children_by_parent: dict[int, list[int]] = {}
    for stat in stats.values():
        children_by_parent.setdefault(stat.parent_pid, []).append(stat.pid)
    tree: dict[int, PidStat] = {}
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        if pid in tree:
            continue  # defensive: a pid reused mid-walk could otherwise loop
        tree[pid] = stats[pid]
        pending.extend(children_by_parent.get(pid, ()))
    return tree
