"""The process-tree walk's cost against the watched process's thread count (issue #18).

A training process has many threads (PyTorch starts one per core, plus CUDA and I/O pools), and
its children are listed per thread (``/proc/<pid>/task/<tid>/children``). This bench starts
``--threads`` idle threads in this process and times ``procfs.read_process_tree`` of itself as a
tick pays it (``--gap-s`` idle before each walk, so it runs cold; thread CPU time), two ways in
alternation: every thread's file on every walk, and ``ForkingThreads`` (the collector's way:
every thread on one walk in ``FULL_CHILDREN_EVERY``, the main and forking threads in between).

    python bench/bench_tree_threads.py --threads 3 64 256 --walks 40
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comet_agent.sources import procfs  # noqa: E402


def measure(thread_count: int, walks: int, gap_s: float) -> dict[str, list[float]]:
    release = threading.Event()
    threads = [threading.Thread(target=release.wait, daemon=True) for _ in range(thread_count)]
    for thread in threads:
        thread.start()
    pid = os.getpid()
    ways = {
        "every thread": (procfs.KernelFiles("/proc"), None),
        "forking threads": (procfs.KernelFiles("/proc"), procfs.ForkingThreads()),
    }
    costs_us: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for _ in range(walks):
            for name, (files, forking) in ways.items():
                time.sleep(gap_s)
                started = time.thread_time_ns()
                tree = procfs.read_process_tree("/proc", pid, files=files, forking=forking)
                costs_us[name].append((time.thread_time_ns() - started) / 1e3)
                assert tree is not None and pid in tree
    finally:
        release.set()
        for files, _ in ways.values():
            files.close()
    return costs_us


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[3, 64, 256])
    parser.add_argument("--walks", type=int, default=40)
    parser.add_argument("--gap-s", type=float, default=0.25)
    args = parser.parse_args()
    print("| threads | way | median us per walk | mean us per walk (full walks included) |")
    print("|---|---|---|---|")
    for count in args.threads:
        for name, costs in measure(count, args.walks, args.gap_s).items():
            costs = costs[1:]  # the first walk opens every file
            print(f"| {count} | {name} | {statistics.median(costs):,.0f} | {statistics.mean(costs):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
