"""Cost of one periodic sample (cpu, memory, load, disk, network, process tree, agent self)
against the raw reads it needs, measured side by side in one run.

(a) raw: open + read of every file the sample reads (/proc/stat, meminfo, loadavg, diskstats,
    net/dev, every /proc/<pid>/stat for the tree walk, the tree's fd listings, the agent's own
    stat), plus statvfs of / and of the job directory: nothing parsed, nothing computed.
(b) sample: ``collector.sample(now_ms)`` on each collector from ``build_periodic_collectors``
    (GPU excluded: ``bench_gpu.py`` covers it), parsing and building records included.

Rounds alternate (a) and (b) so that both see the same host state and cache warmth; medians
over all rounds are compared. The watched job is this process with a few child processes, so
the tree walk has something to find. Target: ratio <= 2.0.

    python bench/bench_periodic_sample.py --rounds 2000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from comet_agent.collectors.periodic import build_periodic_collectors  # noqa: E402
from comet_agent.sources import procfs  # noqa: E402


def raw_reads(procfs_root: str, tree_pids: list[int], agent_pid: int, job_directory: str) -> int:
    """The I/O one sample needs, without parsing. Returns a byte count so nothing is optimised away."""
    total = 0
    for name in ("stat", "meminfo", "loadavg", "diskstats", "net/dev"):
        with open(os.path.join(procfs_root, name), encoding="ascii", errors="replace") as handle:
            total += len(handle.read())
    for pid in os.listdir(procfs_root):  # the tree walk reads every process's stat
        if not pid.isdigit():
            continue
        try:
            with open(os.path.join(procfs_root, pid, "stat"), encoding="ascii", errors="replace") as handle:
                total += len(handle.read())
        except OSError:
            pass
    for pid in tree_pids:
        total += len(os.listdir(os.path.join(procfs_root, str(pid), "fd")))
    with open(os.path.join(procfs_root, str(agent_pid), "stat"), encoding="ascii", errors="replace") as handle:
        total += len(handle.read())
    total += os.statvfs("/").f_blocks + os.statvfs(job_directory).f_blocks
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--children", type=int, default=4, help="child processes in the watched tree")
    args = parser.parse_args()

    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(args.children)]
    try:
        with tempfile.TemporaryDirectory() as job_directory:
            collectors, unavailable = build_periodic_collectors(pid=os.getpid(), directory=job_directory, include_gpu=False)
            tree = procfs.read_process_tree("/proc", os.getpid()) or {}
            tree_pids = sorted(tree)
            process_count = sum(name.isdigit() for name in os.listdir("/proc"))
            for collector in collectors:  # prime the delta collectors
                collector.sample(0)

            raw_s: list[float] = []
            sample_s: list[float] = []
            sink = 0
            for round_index in range(args.rounds):
                start = time.perf_counter()
                sink += raw_reads("/proc", tree_pids, os.getpid(), job_directory)
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
    print(f"host: {os.cpu_count()} CPUs, {process_count} processes under /proc, watched tree of {len(tree_pids)}")
    print(f"collectors: {', '.join(collector.name for collector in collectors)}; unavailable: {unavailable or 'none'}")
    print(f"rounds: {args.rounds} (interleaved)")
    print(f"raw reads      median {raw_median_us:8.1f} us")
    print(f"full sample    median {sample_median_us:8.1f} us")
    print(f"ratio          {sample_median_us / raw_median_us:8.2f}x  (target <= 2.00x)")
    return 0 if sink >= 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
