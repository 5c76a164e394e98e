"""How long the local server takes to render an experiment page with 100,000 metric points.

Writes the points through our client (``APIExperiment.log_metrics_batch``) into a fresh
``LocalServer``, then times ``GET /{workspace}/{project}/{key}`` (server-side downsampling and
HTML rendering; the browser's drawing is not included) against the same page of a small
experiment, in one run. Not part of the test suite.

    .venv/bin/python bench/bench_pages.py [--points 100000] [--series 40] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comet_agent.api import API, APIExperiment  # noqa: E402
from comet_agent.server.app import LocalServer  # noqa: E402


def _names(series: int) -> list[str]:
    cores = [f"sys.cpu.percent.{i:02d}" for i in range(1, max(series - 12, 1) + 1)]
    fixed = [
        "sys.cpu.percent.avg",
        "sys.ram.used",
        "sys.ram.total",
        "sys.load.avg",
        "sys.disk.read_bps",
        "sys.disk.write_bps",
        "sys.network.send_bps",
        "sys.network.receive_bps",
        "sys.gpu.0.gpu_utilization",
        "sys.gpu.0.used_memory",
        "sys.gpu.0.temperature",
        "loss",
    ]
    return (cores + fixed)[:series]


def _fill(experiment: APIExperiment, points: int, series: int) -> None:
    names = _names(series)
    start = int(time.time() * 1000) - points * 10
    batch = []
    for i in range(points):
        name = names[i % len(names)]
        batch.append(
            {
                "metricName": name,
                "metricValue": (i * 7919) % 1000 / 10.0,
                "timestamp": start + i * 10,
                "step": i // len(names) if name == "loss" else None,
            }
        )
        if len(batch) == 1000:
            experiment.log_metrics_batch(batch)
            batch = []
    if batch:
        experiment.log_metrics_batch(batch)


def _time_page(url: str, key: str, repeat: int) -> tuple[float, int]:
    session = requests.Session()
    session.get(url, headers={"Authorization": key}, timeout=120)  # warm the SQLite cache
    timings, size = [], 0
    for _ in range(repeat):
        began = time.perf_counter()
        response = session.get(url, headers={"Authorization": key}, timeout=120)
        timings.append(time.perf_counter() - began)
        response.raise_for_status()
        size = len(response.content)
    return statistics.median(timings), size


def main() -> int:
    """Run the benchmark and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--series", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir, LocalServer(data_dir, api_keys=["bench-key"]) as server:
        api = API(api_key="bench-key", url_override=server.clientlib_url)
        small = APIExperiment(api=api, workspace="bench", project_name="pages", experiment_name="small")
        _fill(small, 1000, args.series)
        big = APIExperiment(api=api, workspace="bench", project_name="pages", experiment_name="big")
        began = time.perf_counter()
        _fill(big, args.points, args.series)
        write_s = time.perf_counter() - began
        small_s, small_bytes = _time_page(small.url, "bench-key", args.repeat)
        big_s, big_bytes = _time_page(big.url, "bench-key", args.repeat)
        print(f"wrote {args.points} points in {args.series} series in {write_s:.1f} s")
        print(f"page, 1,000 points:       median {small_s * 1000:7.1f} ms, {small_bytes / 1024:7.1f} KiB")
        print(f"page, {args.points:,} points: median {big_s * 1000:7.1f} ms, {big_bytes / 1024:7.1f} KiB")
        print(f"ratio big/small: {big_s / small_s:.1f}x")
        api.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
