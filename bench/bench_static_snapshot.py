"""Wall time of the static snapshot (host, Python packages, git, GPU static; with and without OS packages).

Targets (issue 4): at most 300 ms without OS packages, at most 1 s with dpkg.

Two measurements per configuration, median of N runs each:

- cold: a fresh interpreter per run, timing from just before ``import comet_agent.collectors.snapshot``
  to the snapshot's return (module imports and the git/NVML probes included;
  interpreter start-up excluded: the agent is already running when it takes the snapshot);
- warm: repeated snapshots in one process (what a second run, or the agent's stop-time git
  refresh, costs).

Usage::

    python bench/bench_static_snapshot.py [--runs 15] [--directory REPO]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_COLD_SCRIPT = r"""
import json, sys, time
started = time.perf_counter()
from comet_agent.collectors.snapshot import collect_static
snapshot = collect_static(directory=sys.argv[1], include_os_packages=sys.argv[2] == "1")
elapsed_ms = (time.perf_counter() - started) * 1000
print(json.dumps({"ms": elapsed_ms, "os_packages": len(snapshot.os_packages.packages) if snapshot.os_packages else 0,
                  "python_packages": len(snapshot.python_packages.packages) if snapshot.python_packages else 0,
                  "unavailable": snapshot.unavailable}))
"""


def cold_run(directory: str, with_os_packages: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-c", _COLD_SCRIPT, directory, "1" if with_os_packages else "0"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def warm_run(directory: str, with_os_packages: bool) -> float:
    from comet_agent.collectors.snapshot import collect_static

    started = time.perf_counter()
    collect_static(directory=directory, include_os_packages=with_os_packages)
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per measurement (default: %(default)s)")
    parser.add_argument("--directory", default=_ROOT, help="the job directory, for git (default: this repository)")
    args = parser.parse_args()
    sys.path.insert(0, _ROOT)

    targets_ms = {False: 300.0, True: 1000.0}
    print(f"static snapshot, {args.runs} runs each, directory {args.directory}, {os.cpu_count()} CPUs")
    print(
        f"{'configuration':<22} {'cold median ms':>15} {'cold max ms':>12} {'warm median ms':>15} {'target ms':>10}  verdict"
    )
    verdicts = []
    for with_os_packages in (False, True):
        cold = [cold_run(args.directory, with_os_packages) for _ in range(args.runs)]
        warm_run(args.directory, with_os_packages)  # imports and caches, not counted
        warm = [warm_run(args.directory, with_os_packages) for _ in range(args.runs)]
        cold_ms = [c["ms"] for c in cold]
        median_cold = statistics.median(cold_ms)
        target = targets_ms[with_os_packages]
        ok = median_cold <= target
        verdicts.append(ok)
        label = "with OS packages" if with_os_packages else "without OS packages"
        print(
            f"{label:<22} {median_cold:>15.1f} {max(cold_ms):>12.1f} {statistics.median(warm):>15.1f} {target:>10.0f}  "
            f"{'OK' if ok else 'OVER'}"
        )
        print(
            f"    packages: {cold[-1]['python_packages']} python, {cold[-1]['os_packages']} os; "
            f"unavailable: {', '.join(sorted(cold[-1]['unavailable'])) or '-'}"
        )
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
