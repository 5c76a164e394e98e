"""How long the local server takes to render an experiment page with 100,000 metric points,
and (``--browser``) how long headless Chromium takes to draw its charts.

Writes the points through our client (``APIExperiment.log_metrics_batch``) into a fresh
``LocalServer``, then times ``GET /{workspace}/{project}/{key}`` (server-side downsampling and
HTML rendering) against the same page of a small experiment, in one run. With ``--browser`` it
also opens the big page in headless Chromium (DevTools protocol, ``tests/browser/devtools.py``)
``--repeat`` times and reports the main-thread time of loading and drawing it (script, layout,
style: ``_time_browser``) and the bytes of script and stylesheet the page loads. Run from another checkout's copy of this file, it measures
that checkout's renderer the same way (how uPlot was compared with the hand-drawn SVG it
replaced: bench/README.md). Not part of the test suite.

    .venv/bin/python bench/bench_pages.py [--points 100000] [--series 40] [--repeat 5] [--browser]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.parse
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


def _time_browser(url: str, key: str, repeat: int, profile: Path) -> dict[str, float]:
    """Main-thread cost of loading and drawing the page in headless Chromium, medians in ms.

    DevTools ``Performance.getMetrics`` counters (they start at zero with each new document) are
    read once the page settled (charts drawn, then 0.5 s for layout and paint), so they include what the
    browser does after the scripts ran (laying out and painting an SVG) as well as the scripts'
    own drawing (a canvas): ``task`` (all main-thread work), ``script``, ``layout`` + ``style``.
    """
    from comet_agent.api.page_login import page_url
    from tests.browser.devtools import Browser

    parts = urllib.parse.urlsplit(url)
    server_url, path = f"{parts.scheme}://{parts.netloc}", parts.path
    names = {
        "TaskDuration": "task",
        "ScriptDuration": "script",
        "LayoutDuration": "layout",
        "RecalcStyleDuration": "style",
    }
    samples: dict[str, list[float]] = {label: [] for label in names.values()}
    result: dict[str, float] = {}
    with Browser(profile) as browser:
        browser.call("Performance.enable")

        def metrics() -> dict[str, float]:
            found = browser.call("Performance.getMetrics")["metrics"]
            return {names[m["name"]]: m["value"] * 1000 for m in found if m["name"] in names}

        for index in range(repeat + 1):  # the first load warms the browser's cache and JIT
            browser.open(page_url(server_url, key, path))
            browser.wait_for("document.body.dataset.chartsRendered !== undefined")
            time.sleep(0.5)
            after = metrics()
            if index:
                for label in samples:
                    samples[label].append(after[label])
        result = {label: statistics.median(values) for label, values in samples.items()}
        result["charts"] = float(browser.evaluate("document.body.dataset.chartsRendered"))
        result["asset_kib"] = (
            browser.evaluate(
                "performance.getEntriesByType('resource').filter(r => /\\.(js|css)$/.test(r.name))"
                ".reduce((a, r) => a + r.decodedBodySize, 0)"
            )
            / 1024
        )
    return result


def main() -> int:
    """Run the benchmark and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--series", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--browser", action="store_true", help="also time the charts' drawing in headless Chromium")
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
        if args.browser:
            found = _time_browser(big.url, "bench-key", args.repeat, Path(data_dir) / "chromium")
            print(
                f"browser, {args.points:,} points, {found['charts']:.0f} charts: main thread median "
                f"{found['task']:.1f} ms (script {found['script']:.1f}, layout {found['layout']:.1f}, "
                f"style {found['style']:.1f}); JS+CSS {found['asset_kib']:.1f} KiB"
            )
        api.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
