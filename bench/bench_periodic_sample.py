"""Cost of one periodic sample (cpu, memory, load, disk, network, process tree, agent self)
against the raw reads it needs, measured side by side in one run.

(a) raw: open + read of every file the sample reads (/proc/stat, meminfo, loadavg, diskstats,
    net/dev, the tree walk's files: the tree's stat and task/<tid>/children files, or every
    /proc/<pid>/stat on a kernel without children files, the tree's fd listings, the agent's own
    stat), plus statvfs of / and of the job directory: nothing parsed, nothing computed.
(b) sample: ``collector.sample(now_ms)`` on each collector from ``build_periodic_collectors``
    (GPU excluded: ``bench_gpu.py`` covers it), parsing and building records included.

Rounds alternate (a) and (b) so that both see the same host state and cache warmth; medians
over all rounds are compared. The watched job is this process with a few child processes, so
the tree walk has something to find. Target: ratio <= 2.0.

Then how the sample cost grows with the host (``--host-sizes``, default 100, 1,000 and 5,000
processes): generated /proc trees (``tests/support/procfs_tree.py``: the same 5-process job, 22
threads, on hosts of each size), each written twice, with and without the kernel's
``task/<tid>/children`` files, so that the process collector walks the tree through them
(``children``) or falls back to reading every process's stat (``scan``, what every kernel allowed
before). One sample of every collector on each of the 6 trees per round, interleaved. Target:
the children walk at 5,000 processes within 1.2x of its cost at 100.

    python bench/bench_periodic_sample.py --rounds 2000 --scaling-rounds 300
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from comet_agent.collectors.periodic import build_periodic_collectors  # noqa: E402
from comet_agent.sources import procfs  # noqa: E402
from tests.support.procfs_tree import JOB_ROOT_PID, write_host  # noqa: E402


def raw_reads(procfs_root: str, tree_pids: list[int], agent_pid: int, job_directory: str, walk: str) -> int:
    """The I/O one sample needs, without parsing. Returns a byte count so nothing is optimised away."""
    total = 0
    for name in ("stat", "meminfo", "loadavg", "diskstats", "net/dev"):
        with open(os.path.join(procfs_root, name), encoding="ascii", errors="replace") as handle:
            total += len(handle.read())
    if walk == procfs.WALK_CHILDREN:  # the tree's stat files and every tree thread's children file
        for pid in tree_pids:
            with open(os.path.join(procfs_root, str(pid), "stat"), "rb") as handle:
                total += len(handle.read())
            task = os.path.join(procfs_root, str(pid), "task")
            for tid in os.listdir(task):
                with open(os.path.join(task, tid, "children"), "rb") as handle:
                    total += len(handle.read())
    else:
        for pid in os.listdir(procfs_root):  # the scan reads every process's stat
            if not pid.isdigit():
                continue
            try:
                with open(os.path.join(procfs_root, pid, "stat"), "rb") as handle:
                    total += len(handle.read())
            except OSError:
                pass
    for pid in tree_pids:
        total += len(os.listdir(os.path.join(procfs_root, str(pid), "fd")))
    with open(os.path.join(procfs_root, str(agent_pid), "stat"), "rb") as handle:
        total += len(handle.read())
    total += os.statvfs("/").f_blocks + os.statvfs(job_directory).f_blocks
    return total


def scaling(host_sizes: list[int], rounds: int) -> int:
    """The sample cost on generated hosts of each size, children walk against the scan."""
    configs = [(size, with_children) for size in host_sizes for with_children in (True, False)]
    with tempfile.TemporaryDirectory(prefix="bench-procfs-") as scratch:
        collectors_of = {}
        for size, with_children in configs:
            proc = os.path.join(scratch, f"{size}-{'children' if with_children else 'scan'}")
            os.mkdir(proc)
            write_host(Path(proc), size, with_children=with_children)
            collectors, _ = build_periodic_collectors(
                procfs_root=proc,
                pid=JOB_ROOT_PID,
                directory=scratch,
                include_gpu=False,
                sysfs_root=proc,
                cgroup_root=proc,
            )
            walk = next(c.walk for c in collectors if c.name == "process")
            assert walk == (procfs.WALK_CHILDREN if with_children else procfs.WALK_SCAN), walk
            for collector in collectors:
                collector.sample(0)
            collectors_of[size, with_children] = collectors
        times: dict[tuple[int, bool], list[float]] = {config: [] for config in configs}
        sink = 0
        for round_index in range(rounds):
            shift = round_index % len(configs)
            for config in configs[shift:] + configs[:shift]:
                start = time.perf_counter()
                for collector in collectors_of[config]:
                    sink += len(collector.sample(round_index + 1))
                times[config].append(time.perf_counter() - start)
    names = ", ".join(c.name for c in collectors_of[configs[0]])
    print(
        f"\nscaling with the host: generated /proc trees, job of 5 processes (22 threads); collectors: {names}; "
        f"{rounds} rounds, interleaved"
    )
    print(f"{'host processes':>14} {'walk':>9} {'median us':>10} {'p10-p90 us':>17} {'x at ' + str(host_sizes[0]):>9}")
    smallest = {w: statistics.median(times[host_sizes[0], w]) for w in (True, False)}
    for size, with_children in configs:
        series = sorted(times[size, with_children])
        median = statistics.median(series)
        low, high = series[len(series) // 10], series[len(series) * 9 // 10]
        print(
            f"{size:>14} {'children' if with_children else 'scan':>9} {median * 1e6:>10.0f} "
            f"{low * 1e6:>8.0f}-{high * 1e6:<8.0f} {median / smallest[with_children]:>8.2f}x"
        )
    largest = host_sizes[-1]
    for size in host_sizes:
        ratio = statistics.median(times[size, False]) / statistics.median(times[size, True])
        print(f"at {size:>5} processes: scan / children = {ratio:.2f}x")
    growth = statistics.median(times[largest, True]) / smallest[True]
    print(f"children walk at {largest} / at {host_sizes[0]} processes: {growth:.2f}x (target <= 1.20x)")
    return 0 if sink >= 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--children", type=int, default=4, help="child processes in the watched tree")
    parser.add_argument("--scaling-rounds", type=int, default=300, help="rounds of the host-size comparison (0: skip)")
    parser.add_argument("--host-sizes", default="100,1000,5000", help="process counts of the generated hosts")
    args = parser.parse_args()

    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(args.children)]
    try:
        with tempfile.TemporaryDirectory() as job_directory:
            collectors, unavailable = build_periodic_collectors(
                pid=os.getpid(), directory=job_directory, include_gpu=False
            )
            tree = procfs.read_process_tree("/proc", os.getpid()) or {}
            walk = procfs.tree_walk_for("/proc", os.getpid())
            tree_pids = sorted(tree)
            process_count = sum(name.isdigit() for name in os.listdir("/proc"))
            for collector in collectors:  # prime the delta collectors
                collector.sample(0)

            raw_s: list[float] = []
            sample_s: list[float] = []
            sink = 0
            for round_index in range(args.rounds):
                start = time.perf_counter()
                sink += raw_reads("/proc", tree_pids, os.getpid(), job_directory, walk)
                middle = time.perf_counter()
                for collector in collectors:
                    sink += len(collector.sample(round_index))
                end = time.perf_counter()
                raw_s.append(middle - start)
                sample_s.append(end - middle)
    finally:
        for child in children:
            child.kill()
            child.wait()

    raw_median_us = statistics.median(raw_s) * 1e6
    sample_median_us = statistics.median(sample_s) * 1e6
    print(
        f"host: {os.cpu_count()} CPUs, {process_count} processes under /proc, watched tree of {len(tree_pids)} "
        f"(walked by {walk})"
    )
    print(f"collectors: {', '.join(collector.name for collector in collectors)}; unavailable: {unavailable or 'none'}")
    print(f"rounds: {args.rounds} (interleaved)")
    print(f"raw reads      median {raw_median_us:8.1f} us")
    print(f"full sample    median {sample_median_us:8.1f} us")
    print(f"ratio          {sample_median_us / raw_median_us:8.2f}x  (target <= 2.00x)")
    if args.scaling_rounds:
        return scaling([int(size) for size in args.host_sizes.split(",")], args.scaling_rounds)
    return 0 if sink >= 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
