"""Metric charts of the experiment page: which chart shows which metric, in which unit and order.

Series arrive downsampled by the store (``store.metric_series_downsampled``: at most
``MAX_POINTS_PER_SERIES`` min/max-preserving points per series); ``build_charts`` groups them
and thins a chart of many series further (``MAX_POINTS_PER_CHART``), so a page stays small and
fast whatever the number of stored points. ``static/pages.js`` draws them.
"""

from __future__ import annotations

import re

from comet_agent import catalogue
from comet_agent.server.store import DEFAULT_MAX_POINTS_PER_SERIES, downsample_min_max

MAX_POINTS_PER_SERIES = DEFAULT_MAX_POINTS_PER_SERIES
#: Points one chart may draw in all; a chart of many series (64 CPU cores) gets fewer per series
#: (never under ``MIN_POINTS_PER_SERIES``), so a page stays light for the browser too.
MAX_POINTS_PER_CHART = 6000
MIN_POINTS_PER_SERIES = 150


#: The catalogue's units as the charts label their axes (pages.js formats bytes and B/s).
_DISPLAY_UNITS = {
    catalogue.PERCENT: "%",
    catalogue.BYTES_PER_S: "B/s",
    catalogue.COUNT: "",
    catalogue.TASKS: "",
    catalogue.BITMASK: "",
}


def metric_unit(name: str) -> str:
    """The axis unit of a metric, from the metric catalogue (``%``, ``B/s``, ``bytes``, ``°C``,
    ``mW``, ...); ``""`` for counts and for names the catalogue does not know (user metrics)."""
    unit = catalogue.unit_for(name)
    if unit is None:
        return ""
    return _DISPLAY_UNITS.get(unit, unit)


_GPU_NAME = re.compile(r"^sys\.gpu\.(\d+)\.(.+)$")
_GPU_FIELD_CHARTS = {
    "gpu_utilization": ("gpu-utilization", "GPU utilisation"),
    "memory_utilization": ("gpu-utilization", "GPU utilisation"),
    "used_memory": ("gpu-memory", "GPU memory"),
    "total_memory": ("gpu-memory", "GPU memory"),
    "free_memory": ("gpu-memory", "GPU memory"),
    "percent.used_memory": ("gpu-memory-percent", "GPU memory used"),
    "temperature": ("gpu-temperature", "GPU temperature"),
    "power_usage": ("gpu-power", "GPU power"),
    "power_limit": ("gpu-power", "GPU power"),
    "clock_sm": ("gpu-clocks", "GPU clocks"),
    "clock_mem": ("gpu-clocks", "GPU clocks"),
    "fan_speed": ("gpu-fan", "GPU fan speed"),
}
#: (name pattern, chart id, title) in order; the first match wins. Unmatched sys.* metrics get a
#: chart per name prefix and unit; anything else is a user metric with a chart of its own.
_CHART_RULES = (
    (re.compile(r"^sys\.cpu\.(cgroup\.)?percent\."), "cpu", "CPU per core and average"),
    (re.compile(r"^sys\.(ram|swap)\.percent\."), "memory-percent", "RAM and swap used"),
    (re.compile(r"^sys\.ram\."), "ram", "RAM"),
    (re.compile(r"^sys\.swap\."), "swap", "Swap"),
    (re.compile(r"^sys\.load\."), "load", "Load average"),
    (re.compile(r"^sys\.disk\.(read|write)_bps$"), "disk-io", "Disk I/O rate"),
    (re.compile(r"^sys\.disk\.[^.]+\.percent\.used$"), "disk-usage-percent", "Disk usage"),
    (re.compile(r"^sys\.disk\.[^.]+\.used$"), "disk-usage", "Disk used"),
    (re.compile(r"^sys\.network\."), "network", "Network rate"),
    (re.compile(r"^sys\.proc\.cpu\."), "proc-cpu", "Job process tree: CPU"),
    (re.compile(r"^sys\.proc\.(rss|gpu\.\d+\.used_memory)$"), "proc-memory", "Job process tree: memory"),
    (
        re.compile(r"^sys\.proc\.(count|threads|open_files)$"),
        "proc-counts",
        "Job process tree: processes, threads, open files",
    ),
    (re.compile(r"^sys\.agent\.cpu\."), "agent-cpu", "Agent: CPU"),
    (re.compile(r"^sys\.agent\."), "agent-memory", "Agent: memory"),
)


def chart_for_metric(name: str) -> tuple[str, str, str]:
    """``(chart id, title, unit)`` of the chart that shows metric ``name``.

    System metrics (``sys.``) are grouped (CPU cores together, one chart per GPU field with a
    series per GPU, disk and network rates, the job's process tree, ...); any other name is a
    user metric with its own chart (id ``user-<n>`` assigned by the caller; here ``user:<name>``).
    """
    unit = metric_unit(name)
    match = _GPU_NAME.match(name)
    if match:
        chart_id, title = _GPU_FIELD_CHARTS.get(match.group(2), (f"gpu-{match.group(2)}", f"GPU {match.group(2)}"))
        return chart_id, title, unit
    for pattern, chart_id, title in _CHART_RULES:
        if pattern.search(name):
            return chart_id, title, unit
    if name.startswith("sys."):
        prefix = name.rsplit(".", 1)[0]
        return f"sys:{prefix}:{unit}", prefix, unit
    return f"user:{name}", name, ""


_CHART_ORDER = [
    "cpu",
    "memory-percent",
    "ram",
    "swap",
    "load",
    "gpu-utilization",
    "gpu-memory",
    "gpu-memory-percent",
    "gpu-temperature",
    "gpu-power",
    "gpu-clocks",
    "gpu-fan",
    "disk-io",
    "disk-usage-percent",
    "disk-usage",
    "network",
    "proc-cpu",
    "proc-memory",
    "proc-counts",
    "agent-cpu",
    "agent-memory",
]


def build_charts(series: dict[str, dict]) -> list[dict]:
    """Group downsampled series (``metric_series_downsampled``) into charts, in display order.

    Returns:
        ``[{"id", "title", "unit", "kind": "system" | "user", "x": "timestamp" | "step",
        "series": [{"name", "count", "points"}]}]``; a chart's unit splits it when its metrics
        disagree (``RAM (bytes)`` and ``RAM (%)`` are two charts).
    """
    charts: dict[str, dict] = {}
    for name, data in series.items():
        chart_id, title, unit = chart_for_metric(name)
        key = f"{chart_id}|{unit}"
        chart = charts.get(key)
        if chart is None:
            chart = charts[key] = {
                "id": chart_id,
                "title": title,
                "unit": unit,
                "kind": "system" if name.startswith("sys.") else "user",
                "x": data["x"],
                "series": [],
            }
        chart["series"].append({"name": name, "count": data["count"], "points": data["points"]})

    def order(item: tuple[str, dict]) -> tuple:
        chart = item[1]
        if chart["kind"] == "user":
            return (2, chart["title"])
        if chart["id"] in _CHART_ORDER:
            return (0, _CHART_ORDER.index(chart["id"]), chart["unit"])
        return (1, chart["id"])

    result = []
    for index, (_, chart) in enumerate(sorted(charts.items(), key=order)):
        chart["domId"] = f"chart-{index}"
        chart["series"].sort(key=lambda s: _natural_key(s["name"]))
        per_series = max(MAX_POINTS_PER_CHART // len(chart["series"]), MIN_POINTS_PER_SERIES)
        for item in chart["series"]:
            points = item["points"]
            if len(points) > per_series:
                points = downsample_min_max([tuple(p) for p in points], per_series)
            # Six significant digits are more than a 640-pixel chart can show; they keep the page small.
            item["points"] = [[x, float(f"{y:.6g}")] for x, y in points]
        result.append(chart)
    return result


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
