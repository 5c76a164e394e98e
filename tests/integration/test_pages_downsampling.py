"""Server-side downsampling for the pages: min/max-preserving buckets over 100,000 points."""

from __future__ import annotations

import math
import random

import pytest

from comet_agent.server.pages.charts import build_charts, chart_for_metric
from comet_agent.server.store import Store, downsample_min_max, metric_series_downsampled


def test_downsample_keeps_extremes_ends_and_order():
    rng = random.Random(7)
    points = [(i, rng.uniform(10, 20)) for i in range(100_000)]
    points[31_337] = (31_337, 500.0)
    points[77_777] = (77_777, -40.0)
    kept = downsample_min_max(points, 1000)
    assert len(kept) <= 1000
    assert kept[0] == points[0] and kept[-1] == points[-1]
    assert (31_337, 500.0) in kept and (77_777, -40.0) in kept
    assert [x for x, _ in kept] == sorted(x for x, _ in kept)
    assert set(kept) <= set(points)


def test_downsample_leaves_small_series_alone_and_rejects_tiny_caps():
    points = [(i, float(i)) for i in range(10)]
    assert downsample_min_max(points, 10) == points
    with pytest.raises(ValueError):
        downsample_min_max(points, 3)


def test_every_bucket_keeps_its_min_and_max():
    # A sine sampled densely: downsampled, the envelope (per-bucket extremes) must survive.
    points = [(i, math.sin(i / 50)) for i in range(20_000)]
    kept = downsample_min_max(points, 500)
    assert max(y for _, y in kept) == max(y for _, y in points)
    assert min(y for _, y in kept) == min(y for _, y in points)
    assert len(kept) > 400  # buckets are used, not collapsed to a handful


def test_store_series_of_100k_points(tmp_path):
    store = Store(tmp_path / "store")
    try:
        rows = [
            ("sys.ram.used", 1000 + (i % 100), None, None, None, 1_700_000_000_000 + i * 10) for i in range(100_000)
        ]
        rows[50_000] = ("sys.ram.used", 10**9, None, None, None, rows[50_000][5])
        rows += [("loss", 1 / (s + 1), s, None, None, 1_700_000_000_000 + s) for s in range(2000)]
        rows.append(("note", "text, not a number", None, None, None, 1_700_000_000_000))
        with store.transaction():
            store.add_metrics("abc", rows)
        series = metric_series_downsampled(store, "abc", max_points=800)
        assert set(series) == {"sys.ram.used", "loss"}  # the text value cannot be charted
        ram = series["sys.ram.used"]
        assert ram["count"] == 100_000 and ram["x"] == "timestamp" and ram["isSystem"]
        assert len(ram["points"]) <= 800 and max(p[1] for p in ram["points"]) == 10**9
        loss = series["loss"]
        assert loss["x"] == "step" and loss["points"][0] == [0, 1.0] and len(loss["points"]) <= 800
    finally:
        store.close()


@pytest.mark.parametrize(
    "name, chart_id, unit",
    [
        ("sys.cpu.percent.07", "cpu", "%"),
        ("sys.cpu.cgroup.percent.avg", "cpu", "%"),
        ("sys.ram.used", "ram", "bytes"),
        ("sys.ram.percent.used", "memory-percent", "%"),
        ("sys.load.avg15", "load", ""),
        ("sys.gpu.3.gpu_utilization", "gpu-utilization", "%"),
        ("sys.gpu.0.used_memory", "gpu-memory", "bytes"),
        ("sys.gpu.1.temperature", "gpu-temperature", "°C"),
        ("sys.gpu.1.power_usage", "gpu-power", "W"),
        ("sys.disk.read_bps", "disk-io", "B/s"),
        ("sys.disk.job.percent.used", "disk-usage-percent", "%"),
        ("sys.network.send_bps", "network", "B/s"),
        ("sys.proc.rss", "proc-memory", "bytes"),
        ("sys.proc.gpu.0.used_memory", "proc-memory", "bytes"),
        ("sys.proc.threads", "proc-counts", ""),
        ("sys.agent.rss", "agent-memory", "bytes"),
        ("loss", "user:loss", ""),
    ],
)
def test_metric_names_are_grouped_into_charts(name, chart_id, unit):
    found_id, _title, found_unit = chart_for_metric(name)
    assert (found_id, found_unit) == (chart_id, unit)


def test_charts_split_by_unit_and_order_user_metrics_last():
    series = {
        name: {"x": "timestamp", "count": 1, "isSystem": name.startswith("sys."), "points": [[0, 1]]}
        for name in ("zeta", "sys.ram.used", "sys.cpu.percent.01", "sys.cpu.percent.avg", "sys.weird.thing", "alpha")
    }
    charts = build_charts(series)
    assert [c["id"] for c in charts] == ["cpu", "ram", "sys:sys.weird:", "user:alpha", "user:zeta"]
    assert [s["name"] for s in charts[0]["series"]] == ["sys.cpu.percent.01", "sys.cpu.percent.avg"]
    assert len({c["domId"] for c in charts}) == len(charts)


def test_a_chart_of_many_series_shares_a_point_budget():
    from comet_agent.server.pages.charts import MAX_POINTS_PER_CHART, MIN_POINTS_PER_SERIES

    series = {
        # GPUs: 64 CPU cores would be a heatmap, not 64 lines.
        f"sys.gpu.{i}.gpu_utilization": {
            "x": "timestamp",
            "count": 1000,
            "isSystem": True,
            "points": [[t, float(t % 13) + (100 if t == 500 else 0)] for t in range(1000)],
        }
        for i in range(64)
    }
    (gpu,) = build_charts(series)
    assert len(gpu["series"]) == 64
    per_series = max(MAX_POINTS_PER_CHART // 64, MIN_POINTS_PER_SERIES)
    assert all(len(s["points"]) <= per_series for s in gpu["series"])
    assert all(max(p[1] for p in s["points"]) == 106.0 for s in gpu["series"])  # the spike survives
