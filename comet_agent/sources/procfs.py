"""Linux ``/proc``, ``/sys/block`` and cgroup (v1 and v2) readers for the collectors.

Two layers, kept apart so tests can feed literal text or whole fixture trees:

- ``parse_<source>(text)``: pure functions from a file's text to plain values;
- ``read_<thing>(root, ...)``: open + read + parse, with the filesystem root passed in
  (``/proc``, ``/sys`` or ``/sys/fs/cgroup`` in production, a fixture tree in tests). The files a
  periodic sample reads every tick stay open on a live procfs and are re-read with ``pread``
  (``KernelFiles``, ``read_host_file``).

We read ``/proc`` directly rather than through psutil: fixture trees then drive every test, and a
periodic sample costs little more than the raw reads it needs (see ``bench/bench_periodic_sample.py``).
Readers raise ``OSError`` (usually ``FileNotFoundError``) when a file is absent; collectors turn that
into ``Unavailable`` or skip the vanished process. Nothing here runs a command.
"""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Optional

# /proc/diskstats counts 512-byte sectors whatever the device's real sector size
# (Documentation/admin-guide/iostats.rst; include/linux/types.h SECTOR_SHIFT).
DISKSTATS_SECTOR_BYTES = 512

#: Kernel clock ticks per second (USER_HZ), the unit of /proc/stat and /proc/<pid>/stat CPU times.
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: Page size in bytes, the unit of the rss field of /proc/<pid>/stat.
PAGE_SIZE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_text(path: str, *, encoding: str = "ascii") -> str:
    """Return the whole text of a small kernel file (``/proc``, ``/sys``, cgroup).

    Args:
        path: the file.
        encoding: how to decode it; bytes that do not decode become U+FFFD. Counter files are
            ASCII; files that may carry user text (``cpuinfo`` model names) are read as UTF-8.

    Raises:
        OSError: the file is absent or unreadable.
    """
    with open(path, encoding=encoding, errors="replace") as handle:
        return handle.read()


# ---------------------------------------------------------------------------------------------
# Kernel files kept open: the files a periodic sample reads every tick
# ---------------------------------------------------------------------------------------------

# A procfs file regenerates its text on every read from offset 0, so a file read each tick can
# stay open and be re-read with one pread(2): no path lookup, no open/close, no Python file
# object. At one sample a second that is most of a sample's I/O cost, and a cold tick pays it
# two to three times over (bench/bench_tick.py). Only files of a live procfs are kept: a fixture
# tree's files are ordinary files that a test may swap between readings (tests/support/
# procfs_steps.py repoints a symlink), which an open descriptor would not follow. A live procfs
# is told by its ``stat`` file: the kernel reports size 0 for it, a fixture's holds text.
_READ_CHUNK_BYTES = 65536
#: The most files one ``KernelFiles`` keeps open: the descriptors live in the training process
#: (``monitor()``) or in a daemon serving many jobs, whose limits they share. A tree with more
#: threads than this has the rest opened per read.
MAX_KEPT_FILES = 32
_live_roots: dict[str, bool] = {}
_every_kernel_files: "weakref.WeakSet[KernelFiles]" = weakref.WeakSet()


def is_live_procfs(procfs_root: str) -> bool:
    """Whether ``procfs_root`` is a kernel's procfs (not a fixture tree); asked once per root."""
    live = _live_roots.get(procfs_root)
    if live is None:
        try:
            live = os.stat(os.path.join(procfs_root, "stat")).st_size == 0
        except OSError:
            live = False
        _live_roots[procfs_root] = live
    return live


def thread_cpu_time_ns(tid: int) -> int:
    """CPU time (user + system) of thread ``tid`` of this process in ns, from its POSIX CPU clock.

    The clock id is the kernel's encoding of a thread's CPU clock (``MAKE_THREAD_CPUCLOCK``:
    ``~tid << 3 | CPUCLOCK_SCHED | CPUCLOCK_PERTHREAD``), what ``pthread_getcpuclockid()``
    computes, but from the kernel tid: a thread that has ended gives an error, never a read
    through a dangling pthread handle. One syscall and no text: ~12 us cold against ~30 us for
    a kept ``task/<tid>/stat`` read plus its parse, and nanoseconds instead of 10 ms ticks.

    Raises:
        OSError: no thread ``tid`` in this process (EINVAL).
    """
    return time.clock_gettime_ns(((~tid) << 3) | 6)


class KernelFiles:
    """Files under ``procfs_root`` read every tick, kept open between reads on a live procfs.

    A file of a process pins that process: once it exits, reads fail with ``ProcessLookupError``
    (``ESRCH``), also when its pid has been reused, and the file is closed. Never read
    ``<root>/self/...`` through it: after a fork the path would mean another process (a forked
    child closes every kept file anyway and opens what it reads itself).
    """

    def __init__(self, procfs_root: str, *, max_kept: int = MAX_KEPT_FILES):
        self.keep = is_live_procfs(procfs_root)
        self.max_kept = max_kept
        self._fds: dict[str, int] = {}
        self._read_since_sweep: set[str] = set()
        self._lock = threading.Lock()
        _every_kernel_files.add(self)

    def read(self, path: str) -> bytes:
        """The whole content of ``path``. Raises ``OSError`` when absent, unreadable or its process is gone."""
        fd = self._fds.get(path) if self.keep else None
        if fd is None and (not self.keep or len(self._fds) >= self.max_kept):
            return _read_bytes(path)
        self._read_since_sweep.add(path)
        if fd is None:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            with self._lock:
                kept = self._fds.setdefault(path, fd)
            if kept != fd:  # another thread opened it first
                os.close(fd)
                fd = kept
        try:
            data = os.pread(fd, _READ_CHUNK_BYTES, 0)
            if len(data) < _READ_CHUNK_BYTES:
                return data
            chunks = [data]  # a big /proc/stat (many CPUs and interrupts): read on to the end
            offset = len(data)
            while data:
                data = os.pread(fd, _READ_CHUNK_BYTES, offset)
                offset += len(data)
                chunks.append(data)
            return b"".join(chunks)
        except OSError:
            self.forget(path)
            raise

    def forget(self, path: str) -> None:
        """Close ``path`` if kept (the next read opens it anew)."""
        with self._lock:
            fd = self._fds.pop(path, None)
        if fd is not None:
            _close_quietly(fd)

    def sweep(self) -> None:
        """Close every kept file not read since the last sweep (threads and processes that left
        the tree): a reader of a changing set of files sweeps once per tick."""
        with self._lock:
            read, self._read_since_sweep = self._read_since_sweep, set()
            fds = [self._fds.pop(path) for path in [path for path in self._fds if path not in read]]
        for fd in fds:
            _close_quietly(fd)

    def close(self) -> None:
        """Close every kept file."""
        self._read_since_sweep = set()
        self.sweep()

    def __len__(self) -> int:
        return len(self._fds)

    def _forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        fds, self._fds = list(self._fds.values()), {}
        self._read_since_sweep = set()
        for fd in fds:
            _close_quietly(fd)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _forget_all_after_fork() -> None:
    for files in list(_every_kernel_files):
        files._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all_after_fork)

#: The host-wide files (``stat``, ``meminfo``, ...) of each procfs root, shared by every reader.
_host_files: dict[str, KernelFiles] = {}


def read_host_file(procfs_root: str, *parts: str) -> str:
    """``<procfs_root>/<parts...>`` as text: a host-wide file read every tick (kept open on a live
    procfs, see ``KernelFiles``). Raises ``OSError`` when absent or unreadable."""
    files = _host_files.get(procfs_root)
    if files is None:
        files = _host_files.setdefault(procfs_root, KernelFiles(procfs_root))
    return files.read(os.path.join(procfs_root, *parts)).decode("ascii", "replace")


def _read_text_or_empty(path: str, *, encoding: str = "ascii") -> str:
    # For facts that are optional: an absent or unreadable file reads as "" and parses to None.
    try:
        return read_text(path, encoding=encoding)
    except OSError:
        return ""


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


# The ``cpu`` and ``cpuN`` lines, at least the four fields every kernel writes (user nice system
# idle), then up to four more (iowait irq softirq steal). One regex pass in C: on a 128-CPU host
# the file is ~20 kB and a line-by-line split in Python cost more than the read.
_CPU_LINE = re.compile(r"^cpu(\d*) +(\d+) (\d+) (\d+) (\d+)(?: (\d+))?(?: (\d+))?(?: (\d+))?(?: (\d+))?", re.M)
_NOT_A_NUMBER_CPU_LINE = re.compile(r"^cpu\d* +(?:\d+ +)*[^\d\s]", re.M)


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
    for label, user, nice, system, idle, iowait, irq, softirq, steal in _CPU_LINE.findall(text):
        # guest and guest_nice are already counted inside user and nice, so they are left out of
        # the total (counting them twice would understate idle on hypervisors). iowait is idle
        # time: the CPU had nothing to run while waiting (as in top, psutil and node_exporter).
        # Fields a pre-2.6.11 kernel lacks read as "" (0).
        busy = int(user) + int(nice) + int(system) + int(irq or 0) + int(softirq or 0) + int(steal or 0)
        times = CpuTimes(busy, busy + int(idle) + int(iowait or 0))
        if label:
            per_cpu[int(label)] = times
        else:
            aggregate = times
    if aggregate is None and not per_cpu:
        bad = _NOT_A_NUMBER_CPU_LINE.search(text)
        if bad is not None:
            raise ValueError(f"/proc/stat: a CPU line with non-numeric fields: {bad.group(0)[:80]!r}")
    return StatReading(aggregate=aggregate, per_cpu=per_cpu)


def read_stat(procfs_root: str = "/proc") -> StatReading:
    """Read and parse ``<procfs_root>/stat``. Raises ``OSError`` when absent."""
    return parse_stat(read_host_file(procfs_root, "stat"))


# ---------------------------------------------------------------------------------------------
# /proc/cpuinfo
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuInfo:
    """What ``/proc/cpuinfo`` says: the model name and the logical and physical core counts (None when not stated)."""

    model: Optional[str]
    logical_count: Optional[int]
    physical_count: Optional[int]


# Where each architecture states its CPU model, most specific first.
_MODEL_KEYS = ("model name", "Model", "Hardware", "cpu")


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse ``/proc/cpuinfo``.

    The model comes from ``model name`` (x86), ``Model`` or ``Hardware`` (ARM) or ``cpu``
    (POWER). Logical CPUs are the ``processor`` entries; physical cores are the distinct
    (``physical id``, ``core id``) pairs, None when the kernel does not give them (ARM).

    Example:
        >>> parse_cpuinfo("processor : 0\nmodel name : Xeon\n").model
        'Xeon'
    """
    models: dict[str, str] = {}
    logical = 0
    cores: set[tuple[str, str]] = set()
    physical_id = core_id = None

    def end_block() -> None:
        if core_id is not None:
            cores.add((physical_id or "0", core_id))

    for line in text.splitlines() + [""]:
        if not line.strip():
            end_block()
            physical_id = core_id = None
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor" and value.isdigit():
            logical += 1
        elif key in _MODEL_KEYS and value:
            models.setdefault(key, value)
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
    model = next((models[key] for key in _MODEL_KEYS if key in models), None)
    return CpuInfo(model=model, logical_count=logical or None, physical_count=len(cores) or None)


def read_cpuinfo(procfs_root: str = "/proc") -> CpuInfo:
    """Read and parse ``<procfs_root>/cpuinfo`` (as UTF-8). Raises ``OSError`` when absent."""
    return parse_cpuinfo(read_text(os.path.join(procfs_root, "cpuinfo"), encoding="utf-8"))


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


#: The ``meminfo`` lines a memory sample uses (``collectors/memory.py``); all in kB.
_MEMINFO_SAMPLE_LINE = re.compile(
    r"^(MemTotal|MemFree|MemAvailable|Buffers|Cached|SwapTotal|SwapFree):\s+(\d+) kB", re.M
)


def parse_meminfo_for_sample(text: str) -> dict[str, int]:
    """The fields of ``/proc/meminfo`` a memory sample uses, in bytes: one regex pass instead of
    parsing all ~55 lines (a sample's costliest parse). Same values as ``parse_meminfo``."""
    return {name: int(value) * 1024 for name, value in _MEMINFO_SAMPLE_LINE.findall(text)}


def read_meminfo(procfs_root: str = "/proc") -> dict[str, int]:
    """Read and parse ``<procfs_root>/meminfo`` (values in bytes). Raises ``OSError`` when absent."""
    return parse_meminfo(read_host_file(procfs_root, "meminfo"))


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
    return parse_loadavg(read_host_file(procfs_root, "loadavg"))


# ---------------------------------------------------------------------------------------------
# /proc/pressure: pressure stall information (PSI)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PressureTotals:
    """Stall time of one resource since boot, in microseconds (the ``total=`` of each line).

    ``some_us``: time in which at least one task was stalled on the resource; ``full_us``: time
    in which every non-idle task was, or ``None`` when the file has no ``full`` line (``cpu``
    before Linux 5.13).
    """

    some_us: int
    full_us: Optional[int]


def parse_pressure(text: str) -> PressureTotals:
    """Parse a ``/proc/pressure/<cpu|memory|io>`` file: the ``total=`` of its ``some`` and ``full`` lines.

    Lines read ``some avg10=0.12 avg60=0.30 avg300=0.05 total=123456`` (Documentation/accounting/
    psi.rst); only ``total`` is parsed: the kernel's averages are not used.

    Raises:
        ValueError: no ``some`` line, or a ``total`` that is not a number.

    Example:
        >>> parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=1500\\n")
        PressureTotals(some_us=1500, full_us=None)
    """
    totals: dict[str, int] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        _, found, total = rest.rpartition("total=")
        if found:
            totals[kind] = int(total)
    if "some" not in totals:
        raise ValueError(f"pressure file without a 'some ... total=' line: {text[:80]!r}")
    return PressureTotals(some_us=totals["some"], full_us=totals.get("full"))


def read_pressure(procfs_root: str, resource: str) -> PressureTotals:
    """Read and parse ``<procfs_root>/pressure/<resource>`` (``cpu``, ``memory`` or ``io``).

    Raises:
        OSError: absent (a kernel without PSI has no ``pressure`` directory) or unreadable (PSI
            disabled at boot on some kernels answers ``EOPNOTSUPP``).
        ValueError: not in the PSI format.
    """
    return parse_pressure(read_host_file(procfs_root, "pressure", resource))


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
    return parse_diskstats(read_host_file(procfs_root, "diskstats"))


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
    return parse_net_dev(read_host_file(procfs_root, "net", "dev"))


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


def read_pid_stat(procfs_root: str, pid: int, *, files: Optional[KernelFiles] = None) -> PidStat:
    """Read and parse ``<procfs_root>/<pid>/stat``. Raises ``OSError`` when the process is gone.

    ``files``: where a process read every tick keeps its file open (``KernelFiles``).
    """
    # Bytes, decoded by hand: the hottest read of a sample (once per tree process), and a binary
    # read skips the text layer's set-up (about a third of the read's cost).
    path = os.path.join(procfs_root, str(pid), "stat")
    data = files.read(path) if files is not None else _read_bytes(path)
    return parse_pid_stat(data.decode("ascii", "replace"))


def list_pids(procfs_root: str = "/proc") -> list[int]:
    """All process ids listed under ``procfs_root`` (its numeric entries)."""
    return [int(name) for name in os.listdir(procfs_root) if name.isdigit()]


def parse_environ(data: bytes) -> dict[str, str]:
    """``/proc/<pid>/environ`` (NUL-separated ``NAME=value``) as a mapping; entries without ``=`` are skipped."""
    env = {}
    for item in data.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep and name:
            env[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


def parse_cmdline(data: bytes) -> list[str]:
    """``/proc/<pid>/cmdline`` (NUL-terminated arguments, UTF-8) as an argv list.

    Example:
        >>> parse_cmdline(b"python\0train.py\0\0")
        ['python', 'train.py']
    """
    argv = data.decode("utf-8", "replace").split("\0")
    while argv and argv[-1] == "":
        argv.pop()
    return argv


def parse_status_uid(text: str) -> Optional[int]:
    """The real uid (first number of the ``Uid:`` line) of ``/proc/<pid>/status``, or ``None``."""
    for line in text.splitlines():
        if line.startswith("Uid:"):
            parts = line.split()
            if len(parts) > 1 and parts[1].isdigit():
                return int(parts[1])
    return None


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def pid_alive(pid: int, procfs_root: str = "/proc", *, files: Optional[KernelFiles] = None) -> bool:
    """True while ``pid`` runs: it exists (``kill(pid, 0)``, also when it belongs to another user)
    and is not a zombie (exited, not yet reaped by its parent).

    ``files``: a watcher asking every tick keeps the process's ``stat`` open (``KernelFiles``); its
    reads fail once the process is reaped, even if the pid is reused meanwhile.
    """
    if pid <= 0:
        return False
    if files is not None and files.keep:
        try:
            return files.read(f"{procfs_root}/{pid}/stat").rsplit(b")", 1)[1].split()[0] != b"Z"
        except (ProcessLookupError, FileNotFoundError):
            return False
        except (OSError, IndexError):
            pass  # unreadable (another user's, hardened /proc): kill() decides below
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    try:
        with open(os.path.join(procfs_root, str(pid), "stat"), "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # /proc unreadable here: kill() said it exists


def read_pid_executable(procfs_root: str, pid: int) -> str:
    """The executable of ``pid`` (``<procfs_root>/<pid>/exe``), without the kernel's `` (deleted)`` suffix.

    Raises:
        OSError: the process is gone, or belongs to another user (``PermissionError``).
    """
    return os.readlink(os.path.join(procfs_root, str(pid), "exe")).removesuffix(" (deleted)")


def read_pid_cwd(procfs_root: str, pid: int) -> str:
    """The working directory of ``pid`` (``<procfs_root>/<pid>/cwd``).

    Raises:
        OSError: the process is gone, or belongs to another user (``PermissionError``).
    """
    return os.readlink(os.path.join(procfs_root, str(pid), "cwd"))


def read_pid_cmdline(procfs_root: str, pid: int) -> list[str]:
    """The argv of ``pid`` (``<procfs_root>/<pid>/cmdline``). Raises ``OSError`` when the process is gone."""
    return parse_cmdline(_read_bytes(os.path.join(procfs_root, str(pid), "cmdline")))


def read_pid_environ(procfs_root: str, pid: int) -> dict[str, str]:
    """The initial environment of ``pid`` (``<procfs_root>/<pid>/environ``).

    Raises:
        OSError: the process is gone, or belongs to another user (``PermissionError``).
    """
    return parse_environ(_read_bytes(os.path.join(procfs_root, str(pid), "environ")))


def read_pid_uid(procfs_root: str, pid: int) -> Optional[int]:
    """The real uid of ``pid`` from ``<procfs_root>/<pid>/status``; ``None`` when not stated.

    Raises:
        OSError: the process is gone.
    """
    return parse_status_uid(read_text(os.path.join(procfs_root, str(pid), "status"), encoding="utf-8"))


def read_open_file_count(procfs_root: str, pid: int) -> int:
    """Number of open file descriptors of ``pid`` (entries of ``<procfs_root>/<pid>/fd``).

    Raises:
        PermissionError: another user's process, without CAP_SYS_PTRACE.
        FileNotFoundError: the process is gone.
    """
    path = f"{procfs_root}/{pid}/fd"
    if is_live_procfs(procfs_root):
        # Linux 6.2 and later state the count as the directory's size: one stat(2) instead of a
        # listing. Older kernels say 0 there (as does a process without descriptors): list them.
        count = os.stat(path).st_size
        if count > 0:
            return count
    return len(os.listdir(path))


# ---------------------------------------------------------------------------------------------
# cgroups: membership, CPU quota and usage, memory limit
# ---------------------------------------------------------------------------------------------

#: Where the cgroup hierarchy (v2) or the v1 controller mounts live.
CGROUP_ROOT = "/sys/fs/cgroup"
# cgroup v1 reports "no limit" as a huge page-aligned number (e.g. 9223372036854771712).
_CGROUP_V1_UNLIMITED_BYTES = 1 << 62


@dataclass(frozen=True)
class CgroupMembership:
    """``/proc/<pid>/cgroup``: the cgroup v2 path (``None`` without a ``0::`` line) and the v1 path per controller."""

    unified_path: Optional[str]
    v1_paths: dict[str, str]


def parse_proc_cgroup(text: str) -> CgroupMembership:
    """Parse ``/proc/<pid>/cgroup`` (``hierarchy:controllers:path`` lines).

    The v2 path is the first ``0::<path>`` line (an empty path reads as ``/``); every v1 line
    maps each of its controllers (``cpu,cpuacct`` gives two) to its path.

    Example:
        >>> parse_proc_cgroup("3:cpu,cpuacct:/docker/abc\n0::/\n").v1_paths["cpuacct"]
        '/docker/abc'
    """
    unified: Optional[str] = None
    v1: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            if unified is None:
                unified = path.strip() or "/"
            continue
        for controller in controllers.split(","):
            if controller:
                v1[controller] = path
    return CgroupMembership(unified_path=unified, v1_paths=v1)


def parse_cgroup_v2_path(text: str) -> Optional[str]:
    """The cgroup v2 path from ``/proc/<pid>/cgroup`` (the ``0::<path>`` line), or ``None``."""
    return parse_proc_cgroup(text).unified_path


def read_cgroup_membership(procfs_root: str = "/proc", pid: Optional[int] = None) -> CgroupMembership:
    """Read and parse ``<procfs_root>/<pid>/cgroup`` (``self`` when ``pid`` is None). Raises ``OSError``."""
    # UTF-8: cgroup paths are directory names, which may hold any non-NUL byte.
    path = os.path.join(procfs_root, "self" if pid is None else str(pid), "cgroup")
    return parse_proc_cgroup(read_text(path, encoding="utf-8"))


def resolve_cgroup_directory(mount: str, cgroup_path: str, filename: Optional[str] = None) -> str:
    """The directory of ``cgroup_path`` under ``mount``, or ``mount`` itself when we cannot see it there.

    Inside a cgroup namespace (a container) ``/proc/<pid>/cgroup`` says ``/`` or a path that
    lies outside the visible hierarchy; the visible root is then the job's own cgroup.

    Args:
        mount: where the hierarchy (v2) or the controller (v1) is mounted.
        cgroup_path: the path from ``/proc/<pid>/cgroup``.
        filename: when given, the directory must hold this file (``cpu.max``, ``memory.limit_in_bytes``);
            otherwise it must exist.

    Returns:
        A normalised directory path.
    """
    root = os.path.normpath(mount)
    directory = os.path.normpath(os.path.join(root, cgroup_path.lstrip("/")))
    if not directory.startswith(root):
        return root
    present = os.path.isdir(directory) if filename is None else os.path.exists(os.path.join(directory, filename))
    return directory if present else root


def _quota_cpus(quota_us: int, period_us: int) -> Optional[float]:
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


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


def parse_cpu_max_cpus(text: str) -> Optional[float]:
    """cgroup v2 ``cpu.max`` as a number of CPUs (quota / period); ``None`` when unlimited or unreadable.

    Example:
        >>> parse_cpu_max_cpus("150000 100000")
        1.5
    """
    try:
        quota = parse_cpu_max(text)
    except ValueError:
        return None
    return None if quota is None else _quota_cpus(*quota)


def parse_cfs_quota_cpus(quota_text: str, period_text: str) -> Optional[float]:
    """cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` as CPUs, None when unlimited (-1) or unreadable."""
    try:
        quota_us, period_us = int(quota_text.strip()), int(period_text.strip())
    except ValueError:
        return None
    return _quota_cpus(quota_us, period_us)


def parse_cgroup_memory_limit_bytes(text: str) -> Optional[int]:
    """cgroup ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1) in bytes, None when unlimited."""
    value = text.strip()
    if not value.isdigit():
        return None  # "max"
    limit = int(value)
    return None if limit >= _CGROUP_V1_UNLIMITED_BYTES else limit


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
    directory = resolve_cgroup_directory(root, cgroup_path)
    tightest: Optional[CgroupCpuLimit] = None
    while True:
        quota_cpus = parse_cpu_max_cpus(_read_text_or_empty(os.path.join(directory, "cpu.max")))
        if quota_cpus is not None:
            if tightest is None or quota_cpus < tightest.quota_cpus:
                tightest = CgroupCpuLimit(directory=directory, quota_cpus=quota_cpus)
        if directory == root:
            return tightest
        directory = os.path.dirname(directory)


def read_cgroup_cpu_usage_usec(directory: str) -> int:
    """CPU time used by the cgroup at ``directory``, microseconds. Raises ``OSError``/``ValueError``."""
    return parse_cpu_stat_usage_usec(read_text(os.path.join(directory, "cpu.stat")))


@dataclass(frozen=True)
class CgroupLimits:
    """The limits of a job's own cgroup: the cgroup version (1, 2, or None when neither is mounted),
    its CPU quota in CPUs and its memory limit in bytes (None when unlimited or unreadable)."""

    version: Optional[int]
    cpu_quota_cpus: Optional[float]
    memory_limit_bytes: Optional[int]


def read_cgroup_limits(
    procfs_root: str = "/proc", cgroup_root: str = CGROUP_ROOT, pid: Optional[int] = None
) -> CgroupLimits:
    """CPU quota and memory limit set on the cgroup of ``pid`` (``self`` when None), v2 or v1.

    Only the job's own cgroup is read (not its ancestors; ``find_cgroup_cpu_limit`` walks those).
    cgroup v2 is recognised by ``<cgroup_root>/cgroup.controllers``; v1 by the ``cpu,cpuacct``
    (or ``cpu``) and ``memory`` controller mounts below ``cgroup_root``. Never raises: what
    cannot be read is ``None``.
    """
    try:
        membership = read_cgroup_membership(procfs_root, pid)
    except OSError:
        membership = CgroupMembership(unified_path=None, v1_paths={})
    if membership.unified_path is not None and os.path.exists(os.path.join(cgroup_root, "cgroup.controllers")):
        cpu_dir = resolve_cgroup_directory(cgroup_root, membership.unified_path, "cpu.max")
        memory_dir = resolve_cgroup_directory(cgroup_root, membership.unified_path, "memory.max")
        return CgroupLimits(
            version=2,
            cpu_quota_cpus=parse_cpu_max_cpus(_read_text_or_empty(os.path.join(cpu_dir, "cpu.max"))),
            memory_limit_bytes=parse_cgroup_memory_limit_bytes(
                _read_text_or_empty(os.path.join(memory_dir, "memory.max"))
            ),
        )
    v1 = membership.v1_paths
    if not v1:
        return CgroupLimits(version=None, cpu_quota_cpus=None, memory_limit_bytes=None)
    cpu_mount = next(
        (os.path.join(cgroup_root, m) for m in ("cpu,cpuacct", "cpu") if os.path.isdir(os.path.join(cgroup_root, m))),
        None,
    )
    quota_cpus = None
    if cpu_mount and "cpu" in v1:
        cpu_dir = resolve_cgroup_directory(cpu_mount, v1["cpu"], "cpu.cfs_quota_us")
        quota_cpus = parse_cfs_quota_cpus(
            _read_text_or_empty(os.path.join(cpu_dir, "cpu.cfs_quota_us")),
            _read_text_or_empty(os.path.join(cpu_dir, "cpu.cfs_period_us")),
        )
    limit_bytes = None
    memory_mount = os.path.join(cgroup_root, "memory")
    if "memory" in v1 and os.path.isdir(memory_mount):
        memory_dir = resolve_cgroup_directory(memory_mount, v1["memory"], "memory.limit_in_bytes")
        limit_bytes = parse_cgroup_memory_limit_bytes(
            _read_text_or_empty(os.path.join(memory_dir, "memory.limit_in_bytes"))
        )
    return CgroupLimits(version=1, cpu_quota_cpus=quota_cpus, memory_limit_bytes=limit_bytes)


#: How ``read_process_tree`` finds a process's descendants.
WALK_CHILDREN = "children"  # /proc/<pid>/task/<tid>/children: reads the tree only
WALK_SCAN = "scan"  # every /proc/<pid>/stat of the host: reads the whole host


def parse_children(text: str) -> list[int]:
    """``/proc/<pid>/task/<tid>/children``: the space-separated pids of the thread's children.

    Example:
        >>> parse_children("4242 4250 ")
        [4242, 4250]
    """
    return [int(pid) for pid in text.split()]


#: ``ForkingThreads``: every how many walks all of a process's threads are read again.
FULL_CHILDREN_EVERY = 10


class ForkingThreads:
    """Which threads of each tree process have forked, so that most walks read only theirs.

    A process's children are listed per thread (``task/<tid>/children``, under the thread that
    forked them), and reading every thread's file costs ~20 us a thread cold: a walk of a process
    with 64 threads took 1.4 ms, with 256 threads 6.6 ms (PyTorch starts a thread per core; see
    bench/README.md). Most threads never fork (OpenMP, CUDA and I/O pools). So every
    ``full_every``-th walk, and for a process seen for the first time, every thread is read and
    the ones with children are remembered; the walks in between read the main thread and those.
    A child forked by a thread never seen forking before shows up at the next full walk, at most
    ``full_every`` walks late; every other child at once.
    """

    def __init__(self, full_every: int = FULL_CHILDREN_EVERY):
        self.full_every = max(1, full_every)
        self._walks = 0
        self._full = True
        self._forking: dict[int, frozenset[int]] = {}

    def begin_walk(self) -> None:
        """Called once per walk, before it (``read_process_tree`` does)."""
        self._full = self._walks % self.full_every == 0
        self._walks += 1
        if self._full:
            self._forking = {}  # rebuilt by this walk: processes that left the tree are forgotten

    def known(self, pid: int) -> Optional[frozenset[int]]:
        """The threads of ``pid`` besides its main one to read in this walk; None: read them all."""
        return None if self._full else self._forking.get(pid)

    def remember(self, pid: int, forking_tids: frozenset[int]) -> None:
        """After a full read of ``pid``: the threads (its main one aside) found with children."""
        self._forking[pid] = forking_tids


def read_children(
    procfs_root: str,
    pid: int,
    threads: int = 0,
    *,
    files: Optional[KernelFiles] = None,
    forking: Optional[ForkingThreads] = None,
) -> list[int]:
    """The child processes of ``pid``: the union of ``<pid>/task/<tid>/children`` over its threads.

    A child belongs to the thread that forked it (a DataLoader started from a worker thread is
    listed under that thread, not the main one), so every thread is read; ``threads`` (the
    ``stat`` field) saves the listing of ``task/`` for a single-threaded process. ``files``: keep
    the files open between ticks (``KernelFiles``). ``forking``: between its full walks, read
    only the main thread and the threads seen forking (``ForkingThreads``).

    Raises:
        FileNotFoundError: the process is gone, or the kernel has no ``children`` files
            (built without ``CONFIG_PROC_CHILDREN``, before Linux 3.5, or a fixture without them).
    """
    read = files.read if files is not None else _read_bytes
    task_dir = f"{procfs_root}/{pid}/task"
    if threads == 1:
        return parse_children(read(f"{task_dir}/{pid}/children").decode("ascii"))
    known = forking.known(pid) if forking is not None else None
    if known is not None:
        try:
            children = parse_children(read(f"{task_dir}/{pid}/children").decode("ascii"))
        except (FileNotFoundError, ProcessLookupError):
            pass  # gone, or its main thread ended before the others: the full read below says which
        else:
            for tid in known:
                try:
                    children.extend(parse_children(read(f"{task_dir}/{tid}/children").decode("ascii")))
                except (FileNotFoundError, ProcessLookupError):
                    continue  # the thread ended
            return children
    children = []
    forking_tids = set()
    read_one = False
    for name in os.listdir(task_dir):
        try:
            found = parse_children(read(f"{task_dir}/{name}/children").decode("ascii"))
            read_one = True
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread exited since the listing (or no children files at all: see below)
        if found:
            children.extend(found)
            forking_tids.add(int(name))
    if not read_one:
        raise FileNotFoundError(f"no readable {task_dir}/<tid>/children")
    if forking is not None:
        forking.remember(pid, frozenset(forking_tids - {pid}))
    return children


def tree_walk_for(procfs_root: str, pid: int) -> str:
    """``WALK_CHILDREN`` when the kernel (or fixture) under ``procfs_root`` has ``children``
    files (checked on ``pid``'s main thread), else ``WALK_SCAN``. A kernel has them or not for
    its whole uptime, so a collector asks once."""
    children = os.path.join(procfs_root, str(pid), "task", str(pid), "children")
    return WALK_CHILDREN if os.path.exists(children) else WALK_SCAN


def read_process_tree(
    procfs_root: str,
    root_pid: int,
    *,
    walk: Optional[str] = None,
    files: Optional[KernelFiles] = None,
    forking: Optional[ForkingThreads] = None,
) -> Optional[dict[int, PidStat]]:
    """Stats of ``root_pid`` and all its descendants.

    Two ways to find the descendants, the same answer:

    - ``WALK_CHILDREN``: from the root down through ``<pid>/task/<tid>/children`` (one read per
      thread of each tree process, and each tree process's ``stat``). The cost depends on the
      tree, not on how many processes the host runs.
    - ``WALK_SCAN``: every ``<pid>/stat`` of the host, then parent pids; works on every kernel.

    Args:
        procfs_root: the ``/proc`` tree.
        root_pid: the tree's root.
        walk: ``WALK_CHILDREN``, ``WALK_SCAN``, or None: children where the kernel has them (the
            root's ``task/<root>/children`` exists), else the scan.
        files: where the walk keeps the tree's files open between ticks (``KernelFiles``; the
            walk sweeps it: files of processes and threads that left the tree are closed).
        forking: a walker's memory of which threads fork (``ForkingThreads``): between its full
            walks, only those threads' ``children`` are read. None: every thread, every walk.

    Processes that vanish mid-walk are skipped.

    Returns:
        ``{pid: PidStat}`` with the root included, or ``None`` when the root process is gone.

    Raises:
        FileNotFoundError: ``walk=WALK_CHILDREN`` on a kernel (or fixture) without ``children`` files.
    """
    if walk != WALK_SCAN:
        if forking is not None:
            forking.begin_walk()
        try:
            try:
                root = read_pid_stat(procfs_root, root_pid, files=files)
            except (OSError, ValueError):
                return None
            try:
                first_children = read_children(procfs_root, root_pid, root.threads, files=files, forking=forking)
            except (FileNotFoundError, ProcessLookupError):
                if walk == WALK_CHILDREN:
                    raise
                if not os.path.isdir(os.path.join(procfs_root, str(root_pid))):
                    return None  # gone since its stat was read
            else:
                return _walk_children(procfs_root, root, first_children, files, forking)
        finally:
            if files is not None:
                files.sweep()
    return _scan_tree(procfs_root, root_pid)


def _walk_children(
    procfs_root: str,
    root: PidStat,
    first_children: list[int],
    files: Optional[KernelFiles],
    forking: Optional[ForkingThreads],
) -> dict[int, PidStat]:
    tree: dict[int, PidStat] = {root.pid: root}
    pending = list(first_children)
    while pending:
        pid = pending.pop()
        if pid in tree:
            continue  # defensive: a pid reused mid-walk could otherwise loop
        try:
            stat = read_pid_stat(procfs_root, pid, files=files)
            children = read_children(procfs_root, pid, stat.threads, files=files, forking=forking)
        except (OSError, ValueError):
            continue  # exited since its parent listed it
        tree[pid] = stat
        pending.extend(children)
    return tree


def _scan_tree(procfs_root: str, root_pid: int) -> Optional[dict[int, PidStat]]:
    # Walking parent pids works on every kernel, at the price of reading every process's stat.
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
