"""The experiment page's chart data (``server/pages/charts.py``) and its vendored chart library:
display units, node-prefixed grouping, the per-core heatmap, the no-script summaries, the run's
marks, and the uPlot files exactly as vendored and shipped."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from comet_agent.server.pages.charts import (
    HEATMAP_MIN_CORES,
    build_charts,
    chart_for_metric,
    display_unit,
    format_display,
    heatmap,
    run_marks,
    split_node,
)
from comet_agent.server.pages.static import ASSETS, STATIC_DIR

VENDOR = STATIC_DIR / "vendor" / "uplot"


def _series(values: dict[str, list[float]], x: str = "timestamp") -> dict[str, dict]:
    return {
        name: {
            "x": x,
            "count": len(ys),
            "mean": sum(ys) / len(ys),
            "isSystem": name.startswith("sys."),
            "points": [[1000 * i, y] for i, y in enumerate(ys)],
        }
        for name, ys in values.items()
    }


@pytest.mark.parametrize(
    "name, unit, factor",
    [
        ("sys.gpu.0.power_usage", "W", 0.001),
        ("sys.gpu.3.power_limit", "W", 0.001),
        ("sys.gpu.0.clock_sm", "MHz", 1.0),
        ("sys.gpu.0.temperature", "°C", 1.0),
        ("sys.ram.used", "bytes", 1.0),
        ("sys.network.send_bps", "B/s", 1.0),
        ("sys.cpu.percent.07", "%", 1.0),
        ("sys.load.avg", "", 1.0),
        ("node-a.sys.gpu.1.power_usage", "W", 0.001),
        ("loss", "", 1.0),
    ],
)
def test_display_units_come_from_the_catalogue(name, unit, factor):
    assert display_unit(name) == (unit, factor)


def test_power_is_drawn_and_summarised_in_watts():
    (chart,) = build_charts(_series({"sys.gpu.0.power_usage": [120_000, 300_500, 245_000]}))
    assert chart["unit"] == "W"
    assert [p[1] for p in chart["series"][0]["points"]] == [120.0, 300.5, 245.0]
    (summary,) = chart["summary"]
    assert (summary["min"], summary["max"], summary["last"]) == (120.0, 300.5, 245.0)
    assert summary["mean"] == pytest.approx(221.8333, abs=1e-3)


def test_node_prefixed_names_land_in_the_same_kind_of_chart_per_node():
    assert split_node("gpu-07.sys.ram.used") == ("gpu-07", "sys.ram.used")
    assert split_node("my.metric.sys") == (None, "my.metric.sys")  # no "sys." segment: a user metric
    assert split_node("node1.rank3.sys.proc.rss") == ("node1", "sys.proc.rss")  # a rank is not a node
    assert chart_for_metric("rank3.sys.proc.rss")[0] == "proc-memory"
    assert chart_for_metric("gpu-07.sys.ram.used") == ("ram@gpu-07", "RAM (gpu-07)", "bytes")
    charts = build_charts(
        _series(
            {
                "sys.ram.used": [1, 2],
                "n1.sys.ram.used": [3, 4],
                "n1.sys.ram.total": [9, 9],
                "n2.sys.ram.used": [5, 6],
                "loss": [1.0, 0.5],
            }
        )
    )
    ids = [c["id"] for c in charts]
    assert ids == ["ram", "ram@n1", "ram@n2", "user:loss"]
    assert [s["name"] for s in charts[1]["series"]] == ["n1.sys.ram.total", "n1.sys.ram.used"]
    assert all(c["kind"] == "system" for c in charts[:3])


def test_many_cores_become_a_heatmap_and_the_average_stays_a_line():
    cores = {f"sys.cpu.percent.{i:02d}": [float(i), float(i) + 1] for i in range(1, 65)}
    (cpu,) = build_charts(_series({**cores, "sys.cpu.percent.avg": [33.0, 34.0]}))
    assert [s["name"] for s in cpu["series"]] == ["sys.cpu.percent.avg"]
    grid = cpu["heatmap"]
    assert [row["name"] for row in grid["rows"]] == list(cores)  # in core order, 01 .. 64
    assert grid["columns"] == 2 and grid["rows"][63]["values"] == [64.0, 65.0]
    assert len(cpu["summary"]) == 65  # the table still lists every core


def test_few_cores_stay_lines():
    cores = {f"sys.cpu.percent.{i:02d}": [1.0, 2.0] for i in range(1, HEATMAP_MIN_CORES)}
    (cpu,) = build_charts(_series(cores))
    assert cpu["heatmap"] is None and len(cpu["series"]) == HEATMAP_MIN_CORES - 1


def test_heatmap_buckets_average_and_leave_gaps_empty():
    grid = heatmap(
        [
            {"name": "a", "points": [[0, 10.0], [1, 30.0], [8, 50.0]]},
            {"name": "b", "points": [[9, 70.0]]},
        ],
        columns=3,
    )
    assert grid["x0"] == 0 and grid["x1"] == 9 and grid["columns"] == 3
    assert grid["rows"][0]["values"] == [20.0, None, 50.0]
    assert grid["rows"][1]["values"] == [None, None, 70.0]


def test_run_marks_say_how_the_run_ended():
    meta = {"startTimeMillis": 1_000, "endTimeMillis": 5_000}
    assert run_marks(meta, "crashed", 137)[1]["label"] == "end: crashed, exit 137"
    assert run_marks(meta, "finished")[1]["label"] == "end: finished"
    assert run_marks({"startTimeMillis": 1_000, "endTimeMillis": None}, "running") == [
        {"atMs": 1_000, "kind": "start", "label": "start"}
    ]


@pytest.mark.parametrize(
    "value, unit, text",
    [
        (0, "bytes", "0 B"),
        (1023, "bytes", "1023 B"),
        (99.97, "%", "100%"),
        (1023.9 * 2**20, "bytes", "1024 MiB"),
        (1536, "bytes", "1.5 KiB"),
        (256 * 2**30, "bytes", "256 GiB"),
        (3 * 2**20, "B/s", "3 MiB/s"),
        (42.25, "%", "42.2%"),
        (4.0, "%", "4%"),
        (700.0, "W", "700 W"),
        (1410, "MHz", "1410 MHz"),
        (61.5, "°C", "61.5 °C"),
        (0.01234, "", "0.0123"),
        (float("nan"), "%", "-"),
    ],
)
def test_summary_values_read_in_their_unit(value, unit, text):
    assert format_display(value, unit) == text


def test_vendored_uplot_is_the_recorded_release():
    readme = (VENDOR / "README.md").read_text()
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "LICENSE"):
        digest = hashlib.sha256((VENDOR / name).read_bytes()).hexdigest()
        assert f"`{name}`" in readme and digest in readme, name
    assert "MIT License" in (VENDOR / "LICENSE").read_text()
    script = (VENDOR / "uPlot.iife.min.js").read_text()
    assert script.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    # Nothing that the page's CSP (script-src 'self', no unsafe-eval) would refuse.
    assert not re.search(r"\beval\(|new Function\(", script)


def test_every_served_asset_exists_and_is_package_data():
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    for relative, content_type in ASSETS.values():
        assert (STATIC_DIR / relative).is_file(), relative
        assert content_type in ("application/javascript", "text/css")
    assert '"server/static/vendor/uplot/*"' in pyproject and '"server/static/*.js"' in pyproject
