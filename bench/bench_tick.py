"""What one tick of one-second sampling costs, as the agent pays it: cold, once per interval.

A tight loop of samples (``bench_periodic_sample.py``) runs with warm caches; an agent sampling
every second does not: a second of idling flushes the CPU's caches and branch predictors, and the
same sample then costs several times more. This bench samples the host collectors of the real
``/proc`` (cpu, memory, load, disk, network, pressure, agent self; ``build_periodic_collectors``,
no GPU, no process tree) once every ``--gap-s`` seconds, idle in between, and measures the
thread CPU time (``time.thread_time_ns``) of each tick, three ways in rotation on the same host:

- ``inline``: ``HostSampler(defer_decoding=False)``, every collector read and parsed at the tick
  (the agent before deferred decoding, and the daemon now);
- ``deferred``: ``HostSampler(defer_decoding=True)``, the tick captures the files' text, and
  ``drain()`` decodes the captures in a batch every ``--batch`` ticks (the agent's pushes);
  reported as the tick's cost, the batch decode's cost per tick, and their sum;
- ``floor``: open + read of the five files the bench_compare floor reads (no parsing).

    python bench/bench_tick.py --ticks 60 --gap-s 0.5 --batch 60

Prints medians [p10-p90] of the per-tick costs, in microseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from comet_agent.collectors.periodic import build_periodic_collectors  # noqa: E402
from comet_agent.engine.host_sampler import HostSampler  # noqa: E402

FLOOR_FILES = ("/proc/stat", "/proc/meminfo", "/proc/loadavg", "/proc/diskstats", "/proc/net/dev")


def _host_sampler(defer_decoding: bool) -> HostSampler:
    collectors, _ = build_periodic_collectors(
        procfs_root="/proc", pid=None, directory=None, include_gpu=False, with_process_tree=False
    )
    sampler = HostSampler(collectors, defer_decoding=defer_decoding)
    sampler.sample("cpu", 0)  # priming: rates need a first reading
    sampler.drain("cpu")
    return sampler


def _floor() -> None:
    for path in FLOOR_FILES:
        with open(path, "rb") as handle:
            handle.read()


def _spread(values: list[float]) -> str:
    ordered = sorted(values)
    p10, p90 = ordered[len(ordered) // 10], ordered[(len(ordered) * 9) // 10]
    return f"{statistics.median(ordered):7.1f} [{p10:.1f}-{p90:.1f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=60, help="ticks of each way (default 60)")
    parser.add_argument("--gap-s", type=float, default=0.5, help="idle seconds before each tick (default 0.5)")
    parser.add_argument("--batch", type=int, default=60, help="deferred: ticks decoded per drain (default 60)")
    args = parser.parse_args(argv)
    inline, deferred = _host_sampler(False), _host_sampler(True)
    costs: dict[str, list[float]] = {"floor": [], "inline": [], "deferred tick": []}
    decode_ns, decoded_ticks, records = 0, 0, 0
    for tick in range(1, args.ticks + 1):
        for way in ("floor", "inline", "deferred"):
            time.sleep(args.gap_s)
            now_ms = int(time.time() * 1000)
            started = time.thread_time_ns()
            if way == "floor":
                _floor()
            elif way == "inline":
                records += len(inline.sample("cpu", now_ms))
            else:
                deferred.sample("cpu", now_ms)
            costs[way if way != "deferred" else "deferred tick"].append((time.thread_time_ns() - started) / 1000)
            if way == "deferred" and tick % args.batch == 0:
                started = time.thread_time_ns()
                decoded = deferred.drain("cpu")
                decode_ns += time.thread_time_ns() - started
                decoded_ticks += args.batch
                assert decoded, "the deferred sampler decoded nothing"
    decode_us_per_tick = decode_ns / 1000 / decoded_ticks if decoded_ticks else float("nan")
    print(f"{args.ticks} ticks of each way, {args.gap_s} s idle before each, batches of {args.batch} ticks")
    print("way                      us per tick, median [p10-p90]")
    for way, values in costs.items():
        print(f"{way:<24} {_spread(values)}")
    print(f"{'deferred decode':<24} {decode_us_per_tick:7.1f} (mean per tick, over {decoded_ticks} ticks)")
    deferred_total = statistics.median(costs["deferred tick"]) + decode_us_per_tick
    print(f"{'deferred total':<24} {deferred_total:7.1f}")
    inline_median = statistics.median(costs["inline"])
    print(f"inline / deferred total: {inline_median / deferred_total:.2f}x")
    print(f"inline / floor: {inline_median / statistics.median(costs['floor']):.2f}x, ", end="")
    print(f"deferred total / floor: {deferred_total / statistics.median(costs['floor']):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
