"""Metric charts of the experiment page: which chart shows which metric, in which unit and order.

Series arrive downsampled by the store (``store.metric_series_downsampled``: at most
``MAX_POINTS_PER_SERIES`` min/max-preserving points per series); ``build_charts`` groups them
(``chart_for_metric``: one rule, node-prefixed names included), converts them to their display
unit (power in W), and thins a chart of many series further (``MAX_POINTS_PER_CHART``), so a page
stays small and fast whatever the number of stored points. A host with more than
``HEATMAP_MIN_CORES - 1`` per-core series gets a heatmap (``heatmap``) beside its average line
instead of one line per core. Each series carries min / mean / max / last, which the page shows
as a table when scripts are off. ``run_marks`` gives the run's start and end (with its state and
exit code) for the time charts. ``static/charts.js`` draws it all with the vendored uPlot.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

from comet_agent import catalogue
from comet_agent.server.store import DEFAULT_MAX_POINTS_PER_SERIES, downsample_min_max

MAX_POINTS_PER_SERIES = DEFAULT_MAX_POINTS_PER_SERIES
#: Points one chart may draw in all; a chart of many series gets fewer per series (never under
#: ``MIN_POINTS_PER_SERIES``), so a page stays light for the browser too.
MAX_POINTS_PER_CHART = 6000
MIN_POINTS_PER_SERIES = 150
#: From this many per-core CPU series on, a host's cores are a heatmap (rows = cores, columns =
#: time) plus the average line: 9 lines are still readable, 64 are a tangle.
HEATMAP_MIN_CORES = 9
#: Time columns of the heatmap: about one per two pixels of a chart, and a small page.
HEATMAP_COLUMNS = 240
#: The "other" ``comet-agent run`` logs with the wrapped command's exit status (``cli/run.py``).
EXIT_CODE_OTHER = "comet_agent.exit_code"

#: Catalogue unit -> (display unit, factor from stored to display value). charts.js formats
#: ``bytes`` and ``B/s`` with binary prefixes; power is stored in mW and shown in W.
_DISPLAY_UNITS = {
    catalogue.PERCENT: ("%", 1.0),
    catalogue.BYTES: ("bytes", 1.0),
    catalogue.BYTES_PER_S: ("B/s", 1.0),
    catalogue.MILLIWATTS: ("W", 0.001),
    catalogue.MEGAHERTZ: ("MHz", 1.0),
    catalogue.CELSIUS: ("°C", 1.0),
    catalogue.COUNT: ("", 1.0),
    catalogue.TASKS: ("", 1.0),
    catalogue.BITMASK: ("", 1.0),
}
#: Where a node-prefixed system name (``<node>.sys.cpu.percent.01``, multi-node experiments)
#: splits into its node and the catalogue name.
_NODE_PREFIX = re.compile(r"^(?P<node>.+?)\.(?P<base>sys\..+)$")
_PER_CORE = re.compile(r"^sys\.cpu\.percent\.\d+$")
_RANK = re.compile(r"^rank\d+$")


def split_node(name: str) -> tuple[Optional[str], str]:
    """``(node, catalogue name)`` of a metric: the part before ``sys.`` names a node.

    A last part ``rank<N>`` before ``sys.`` names a process of a distributed job, not a node:
    ``node1.rank0.sys.proc.rss`` is node ``node1``, ``rank2.sys.proc.rss`` (ranks of a
    single-node job) has no node. The series keeps its full name; this only decides its chart.

    Example:
        >>> split_node("gpu-node-2.sys.cpu.percent.07"), split_node("sys.ram.used"), split_node("loss")
        (('gpu-node-2', 'sys.cpu.percent.07'), (None, 'sys.ram.used'), (None, 'loss'))
        >>> split_node("node1.rank0.sys.proc.rss"), split_node("rank2.sys.proc.rss")
        (('node1', 'sys.proc.rss'), (None, 'sys.proc.rss'))
    """
    if name.startswith("sys."):
        return None, name
    match = _NODE_PREFIX.match(name)
    if not match:
        return None, name
    head, base = match.group("node"), match.group("base")
    node, _, last = head.rpartition(".")
    if not _RANK.match(last):
        node = head
    return node or None, base


def display_unit(name: str) -> tuple[str, float]:
    """``(unit, factor)``: the unit a metric is shown in and what turns a stored value into it.

    From the metric catalogue (node prefixes ignored); ``("", 1.0)`` for counts and for names the
    catalogue does not know (user metrics).

    Example:
        >>> display_unit("sys.gpu.0.power_usage"), display_unit("node-1.sys.ram.used"), display_unit("loss")
        (('W', 0.001), ('bytes', 1.0), ('', 1.0))
    """
    unit = catalogue.unit_for(split_node(name)[1])
    if unit is None:
        return "", 1.0
    return _DISPLAY_UNITS.get(unit, (unit, 1.0))


def metric_unit(name: str) -> str:
    """The display unit of a metric (``%``, ``B/s``, ``bytes``, ``°C``, ``W``, ``MHz``; ``""``
    for counts and user metrics): see ``display_unit``."""
    return display_unit(name)[0]


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
    user metric with its own chart (id ``user:<name>``). A node-prefixed system name
    (``<node>.sys.*``, see ``split_node``) lands in the same kind of chart as the bare name, one
    per node: id ``<chart id>@<node>``, the node in the title.

    Example:
        >>> chart_for_metric("sys.gpu.1.power_usage"), chart_for_metric("n2.sys.cpu.percent.03")
        (('gpu-power', 'GPU power', 'W'), ('cpu@n2', 'CPU per core and average (n2)', '%'))
    """
    unit = metric_unit(name)
    node, base = split_node(name)
    chart_id, title = _system_chart(base) if base.startswith("sys.") else (f"user:{name}", name)
    if node is not None:
        return f"{chart_id}@{node}", f"{title} ({node})", unit
    return chart_id, title, unit if base.startswith("sys.") else ""


def _system_chart(base: str) -> tuple[str, str]:
    match = _GPU_NAME.match(base)
    if match:
        return _GPU_FIELD_CHARTS.get(match.group(2), (f"gpu-{match.group(2)}", f"GPU {match.group(2)}"))
    for pattern, chart_id, title in _CHART_RULES:
        if pattern.search(base):
            return chart_id, title
    prefix = base.rsplit(".", 1)[0]
    return f"sys:{prefix}:{metric_unit(base)}", prefix


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

    Values are converted to the chart's display unit (``display_unit``: power in W). The per-core
    series of a host with ``HEATMAP_MIN_CORES`` or more cores leave the lines for the chart's
    ``heatmap``; they keep their row in ``summary``.

    Returns:
        ``[{"id", "title", "unit", "kind": "system" | "user", "x": "timestamp" | "step", "domId",
        "series": [{"name", "count", "points"}], "summary": [{"name", "count", "min", "mean",
        "max", "last"}], "heatmap": None | see ``heatmap``}]``; a chart's unit splits it when its
        metrics disagree (``RAM (bytes)`` and ``RAM (%)`` are two charts).
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
                "kind": "system" if split_node(name)[1].startswith("sys.") else "user",
                "x": data["x"],
                "series": [],
            }
        factor = display_unit(name)[1]
        points = [[x, y * factor] for x, y in data["points"]] if factor != 1.0 else data["points"]
        mean = data.get("mean")
        chart["series"].append(
            {
                "name": name,
                "count": data["count"],
                "points": points,
                "mean": mean * factor if mean is not None else None,
            }
        )

    def order(item: tuple[str, dict]) -> tuple:
        chart = item[1]
        if chart["kind"] == "user":
            return (2, chart["title"])
        base_id, _, node = chart["id"].partition("@")
        if base_id in _CHART_ORDER:
            return (0, node, _CHART_ORDER.index(base_id), chart["unit"])
        return (1, node, chart["id"])

    result = []
    for index, (_, chart) in enumerate(sorted(charts.items(), key=order)):
        chart["domId"] = f"chart-{index}"
        chart["series"].sort(key=lambda s: _natural_key(s["name"]))
        chart["summary"] = [_summary(item) for item in chart["series"]]
        cores = [item for item in chart["series"] if _PER_CORE.match(split_node(item["name"])[1])]
        chart["heatmap"] = None
        if len(cores) >= HEATMAP_MIN_CORES and chart["x"] == "timestamp":
            chart["heatmap"] = heatmap(cores)
            core_names = {item["name"] for item in cores}
            chart["series"] = [item for item in chart["series"] if item["name"] not in core_names]
        per_series = max(MAX_POINTS_PER_CHART // max(len(chart["series"]), 1), MIN_POINTS_PER_SERIES)
        for item in chart["series"]:
            points = item.pop("points")
            item.pop("mean", None)
            if len(points) > per_series:
                points = downsample_min_max([tuple(p) for p in points], per_series)
            # Six significant digits are more than a 640-pixel chart can show; they keep the page small.
            item["points"] = [[x, float(f"{y:.6g}")] for x, y in points]
        result.append(chart)
    return result


def _summary(item: dict) -> dict:
    """min / mean / max / last of a series; downsampling keeps extremes and the last point."""
    values = [y for _, y in item["points"]]
    mean = item.get("mean")
    return {
        "name": item["name"],
        "count": item["count"],
        "min": min(values),
        "mean": mean if mean is not None else sum(values) / len(values),
        "max": max(values),
        "last": values[-1],
    }


def heatmap(cores: list[dict], columns: int = HEATMAP_COLUMNS) -> dict:
    """Per-core utilisation as a grid: one row per core, ``columns`` equal time buckets.

    Args:
        cores: series ``{"name", "points": [[epoch ms, percent], ...]}`` in row order.
        columns: the most buckets; fewer when the series have fewer points.

    Returns:
        ``{"x0", "x1" (epoch ms, the grid's span), "columns", "rows": [{"name", "values"}]}``;
        a cell is the mean of its bucket's points rounded to 0.1, or None where a core has none.

    Example:
        >>> heatmap([{"name": "sys.cpu.percent.01", "points": [[0, 10], [10, 30], [20, 50]]}], columns=2)
        {'x0': 0, 'x1': 20, 'columns': 2, 'rows': [{'name': 'sys.cpu.percent.01', 'values': [10.0, 40.0]}]}
    """
    x0 = min(item["points"][0][0] for item in cores)
    x1 = max(item["points"][-1][0] for item in cores)
    count = max(1, min(columns, max(len(item["points"]) for item in cores)))
    width = (x1 - x0) / count or 1.0
    rows = []
    for item in cores:
        sums, counts = [0.0] * count, [0] * count
        for x, y in item["points"]:
            column = min(int((x - x0) / width), count - 1)
            sums[column] += y
            counts[column] += 1
        values = [round(total / n, 1) if n else None for total, n in zip(sums, counts)]
        rows.append({"name": item["name"], "values": values})
    return {"x0": x0, "x1": x1, "columns": count, "rows": rows}


def run_marks(metadata: dict, status: str, exit_code: Any = None) -> list[dict]:
    """The run's start and end as marks for the time charts: ``[{"atMs", "kind", "label"}]``.

    The end mark says how the run ended (``finished``, ``crashed``) and the wrapped command's exit
    code when the agent recorded one (the ``EXIT_CODE_OTHER`` other); a running experiment has
    no end mark.

    Example:
        >>> run_marks({"startTimeMillis": 1000, "endTimeMillis": 9000}, "finished", "0")
        [{'atMs': 1000, 'kind': 'start', 'label': 'start'}, {'atMs': 9000, 'kind': 'end', 'label': 'end: finished, exit 0'}]
    """
    marks = []
    start, end = metadata.get("startTimeMillis"), metadata.get("endTimeMillis")
    if start is not None:
        marks.append({"atMs": start, "kind": "start", "label": "start"})
    if end is not None:
        label = f"end: {status}" if status != "running" else "end"
        if exit_code not in (None, ""):
            label += f", exit {exit_code}"
        marks.append({"atMs": end, "kind": "end", "label": label})
    return marks


_SUFFIX_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def format_display(value: Optional[float], unit: str) -> str:
    """A value already in its display unit, for people (the no-script summary table).

    Bytes and B/s with binary prefixes, the others with about three significant digits.

    Example:
        >>> format_display(25276071936, "bytes"), format_display(1536, "B/s"), format_display(245.1, "W")
        ('23.5 GiB', '1.5 KiB/s', '245 W')
        >>> format_display(99.44, "%"), format_display(0.0123, ""), format_display(None, "%")
        ('99.4%', '0.0123', '-')
    """
    if value is None or not math.isfinite(value):
        return "-"
    if unit in ("bytes", "B/s"):
        prefixes = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
        index = 0
        while abs(value) >= 1024 and index < len(prefixes) - 1:
            value /= 1024
            index += 1
        return f"{_three_digits(value)} {prefixes[index]}" + ("/s" if unit == "B/s" else "")
    text = _three_digits(value)
    if unit == "%":
        return text + "%"
    return f"{text} {unit}" if unit else text


def _three_digits(value: float) -> str:
    if abs(value) < 100:  # round to the digits shown first: 99.97 reads "100", not "100.0"
        value = float(f"{value:.3g}")
    magnitude = abs(value)
    if magnitude >= 100 or float(value).is_integer():
        return str(round(value))
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
