"""Writes generated ``/proc`` trees: a host with any number of processes and a watched job tree.

The recorded scenarios of ``tests/fixtures/procfs`` hold a handful of processes; how the process
tree walk scales with the host (100 or 5,000 processes) needs bigger trees, generated here into a
temporary directory, in the kernel's formats: ``<pid>/stat`` (proc(5): the fields the collectors
read are real, the rest plausible), ``<pid>/fd/`` entries, ``<pid>/task/<tid>/`` per thread and,
unless asked not to, ``<pid>/task/<tid>/children`` (``CONFIG_PROC_CHILDREN``: the pids that
thread forked, space-separated with a trailing space, as the kernel writes them). The host-wide
files (``stat``, ``meminfo``, ``loadavg``, ``diskstats``, ``net/dev``, ``pressure/``) are copied
from the recorded ``vm-2cpu`` scenario.

Used by ``tests/unit/sources/test_procfs_tree.py`` and ``bench/bench_periodic_sample.py``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from tests.support.procfs_steps import PROCFS_FIXTURES

HOST_FILES = ("stat", "meminfo", "loadavg", "diskstats", "net/dev", "pressure/cpu", "pressure/memory", "pressure/io")


@dataclass
class FakeProcess:
    """One process of a generated tree. ``forked_by``: the thread (tid) of the parent that forked
    it, None for the parent's main thread."""

    pid: int
    parent_pid: int
    command_name: str = "python"
    threads: int = 1
    utime_ticks: int = 100
    stime_ticks: int = 20
    start_ticks: int = 5000
    rss_pages: int = 1000
    open_files: int = 3
    forked_by: Optional[int] = None
    extra_tids: list[int] = field(default_factory=list)

    def stat_line(self) -> str:
        """The ``stat`` line (fields 1-44 of proc(5))."""
        fields = [
            "S",
            self.parent_pid,
            self.pid,
            self.pid,
            0,
            -1,
            4194304,
            1000,
            0,
            0,
            0,
            self.utime_ticks,
            self.stime_ticks,
            0,
            0,
            20,
            0,
            self.threads,
            0,
            self.start_ticks,
            200_000_000,
            self.rss_pages,
            18446744073709551615,
        ] + [0] * 21
        return f"{self.pid} ({self.command_name}) " + " ".join(map(str, fields)) + "\n"

    @property
    def tids(self) -> list[int]:
        return [self.pid, *self.extra_tids]


def write_processes(proc: Path, processes: Iterable[FakeProcess], *, with_children: bool = True) -> None:
    """Write each process's ``stat``, ``fd/`` and ``task/<tid>/`` (with ``children`` files unless
    ``with_children`` is False) under ``proc``."""
    processes = list(processes)
    by_pid = {process.pid: process for process in processes}
    children_of: dict[tuple[int, int], list[int]] = {}
    for process in processes:
        parent = by_pid.get(process.parent_pid)
        if parent is not None:
            tid = process.forked_by if process.forked_by is not None else parent.pid
            children_of.setdefault((parent.pid, tid), []).append(process.pid)
    for process in processes:
        directory = proc / str(process.pid)
        (directory / "fd").mkdir(parents=True, exist_ok=True)
        (directory / "stat").write_text(process.stat_line())
        for fd in range(process.open_files):
            (directory / "fd" / str(fd)).write_text("")
        for tid in process.tids:
            task = directory / "task" / str(tid)
            task.mkdir(parents=True, exist_ok=True)
            if with_children:
                children = children_of.get((process.pid, tid), [])
                (task / "children").write_text("".join(f"{child} " for child in children))


def copy_host_files(proc: Path, scenario: str = "vm-2cpu") -> None:
    """Copy the host-wide files of a recorded scenario's ``step0`` into ``proc``."""
    source = PROCFS_FIXTURES / scenario / "step0" / "proc"
    for name in HOST_FILES:
        target = proc / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target)


#: The watched job of ``write_host``: a trainer (pid 1000, 12 threads) with two DataLoader workers
#: (one forked from a non-main thread), a grandchild, and a compiler child.
JOB_ROOT_PID = 1000


def job_tree() -> list[FakeProcess]:
    """The watched job's processes (see ``JOB_ROOT_PID``)."""
    return [
        FakeProcess(
            JOB_ROOT_PID,
            1,
            threads=12,
            extra_tids=list(range(1001, 1012)),
            utime_ticks=5000,
            rss_pages=250_000,
            open_files=40,
        ),
        FakeProcess(2000, JOB_ROOT_PID, threads=4, extra_tids=[2001, 2002, 2003], rss_pages=60_000, open_files=10),
        FakeProcess(
            2100,
            JOB_ROOT_PID,
            threads=4,
            extra_tids=[2101, 2102, 2103],
            rss_pages=60_000,
            open_files=10,
            forked_by=1005,
        ),
        FakeProcess(2200, 2000, command_name="sh -c (x) y", rss_pages=500),
        FakeProcess(2300, JOB_ROOT_PID, command_name="nvcc", rss_pages=8000, forked_by=1011),
    ]


def write_host(proc: Path, process_count: int, *, with_children: bool = True) -> list[FakeProcess]:
    """A host of ``process_count`` processes in all: init (pid 1), the job of ``job_tree()``, and
    sleeping daemons under init up to the count. Returns every process written."""
    job = job_tree()
    others = max(process_count - len(job) - 1, 0)
    processes = [FakeProcess(1, 0, command_name="systemd", start_ticks=1)] + job
    processes += [FakeProcess(10_000 + n, 1, command_name=f"daemon-{n}", start_ticks=100 + n) for n in range(others)]
    copy_host_files(proc)
    write_processes(proc, processes, with_children=with_children)
    return processes
