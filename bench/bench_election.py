"""Cost of the host-sampler election per tick (``engine/election.py``), against what it saves.

Measured side by side in one run, rounds interleaved, medians compared:

(a) holder: ``is_sampler()`` of the process that holds the role (no system call);
(b) waiter: ``is_sampler()`` of a process that does not (one non-blocking ``flock`` that fails);
(c) host sample: one sample of the host collectors (cpu, memory, load, disk, network, pressure;
    GPUs and the agent's own footprint excluded) on this machine's ``/proc``: what each waiting
    rank no longer pays per tick.

Then per tick on a node of ``--ranks`` local ranks: with the election, one host sample plus
``ranks - 1`` waiter checks; without it, ``ranks`` host samples.

    python bench/bench_election.py --rounds 2000 --ranks 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from comet_agent.collectors.periodic import build_periodic_collectors  # noqa: E402
from comet_agent.engine.election import HostElection, election_path  # noqa: E402


def _time_us(action) -> float:
    start = time.perf_counter_ns()
    action()
    return (time.perf_counter_ns() - start) / 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--ranks", type=int, default=4, help="local ranks on the node (default: %(default)s)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        path = election_path(Path(scratch), "0" * 32, "node0")
        holder, waiter = HostElection(path), HostElection(path)
        assert holder.is_sampler() and not waiter.is_sampler()
        collectors, _ = build_periodic_collectors(include_gpu=False, with_process_tree=False)
        collectors = [c for c in collectors if c.name != "agent_self"]
        now_ms = int(time.time() * 1000)

        def sample() -> None:
            for collector in collectors:
                collector.sample(now_ms)

        sample()  # prime the rates
        times: dict[str, list[float]] = {"holder": [], "waiter": [], "host sample": []}
        for _ in range(args.rounds):
            times["holder"].append(_time_us(holder.is_sampler))
            times["waiter"].append(_time_us(waiter.is_sampler))
            times["host sample"].append(_time_us(sample))
        holder.release()
        waiter.release()

    median = {name: statistics.median(values) for name, values in times.items()}
    for name, value in median.items():
        print(f"{name:12s} median {value:9.2f} us  (p90 {statistics.quantiles(times[name], n=10)[-1]:9.2f} us)")
    with_election = median["host sample"] + (args.ranks - 1) * median["waiter"]
    without = args.ranks * median["host sample"]
    print(
        f"per tick, {args.ranks} ranks on one node: {with_election:.1f} us with the election, "
        f"{without:.1f} us without ({without / with_election:.2f}x); the election costs "
        f"{median['waiter'] / median['host sample'] * 100:.2f}% of a host sample per waiting rank"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
