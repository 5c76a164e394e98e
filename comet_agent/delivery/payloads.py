"""Periodic records -> Comet metric points, push windows, and the requests that carry them.

This is the one place where our records (snake_case, units in names) meet Comet's payloads. Metric
names follow what Comet's own SDK logs (``comet_ml/system/*`` in comet_ml 3.58.8) where one exists;
the rest are our documented extensions under the same ``sys.`` prefix. The records of
``comet_agent.records`` are mapped to names here; a record defined beside its collector names its
own metrics instead (``records.MetricRecord``: a ``metric_pairs()`` method), so a new collector
needs no edit here. Which names exist, their
units, kinds and window rules are in the metric catalogue (``comet_agent/catalogue.py``, rendered
as ``docs/metrics.md``); a test checks that what this module emits and the catalogue agree.

A ``None`` field produces no point: an unsupported reading is absent, never a fake 0.
"""

from __future__ import annotations

from typing import Any, Iterable

from comet_agent.catalogue import Window, entry_for, index_of
from comet_agent.records import (
    AgentSelfSample,
    CpuSample,
    DiskIoSample,
    DiskUsageSample,
    GpuSample,
    LoadSample,
    MemorySample,
    NetworkSample,
    ProcessTreeSample,
)

MetricPoint = dict[str, Any]

#: GpuSample field -> metric suffix after ``sys.gpu.<i>.``, in the order points are emitted.
GPU_METRIC_FIELDS: tuple[tuple[str, str], ...] = (
    ("utilization_percent", "gpu_utilization"),
    ("memory_utilization_percent", "memory_utilization"),
    ("memory_used_bytes", "used_memory"),
    ("memory_free_bytes", "free_memory"),
    ("memory_total_bytes", "total_memory"),
    ("temperature_celsius", "temperature"),
    ("power_usage_milliwatts", "power_usage"),
    ("power_limit_milliwatts", "power_limit"),
    ("clock_sm_mhz", "clock_sm"),
    ("clock_memory_mhz", "clock_mem"),
    ("fan_speed_percent", "fan_speed"),
    ("throttle_reasons", "throttle_reasons"),
    ("ecc_errors_corrected", "ecc_errors_corrected"),
    ("ecc_errors_uncorrected", "ecc_errors_uncorrected"),
)


def cpu_metric_name(cpu_number: int) -> str:
    """Comet's per-CPU metric name: ``sys.cpu.percent.01`` for CPU 0 (1-based, 2 digits at least)."""
    return f"sys.cpu.percent.{cpu_number + 1:02d}"


def _pairs_for(record: object) -> list[tuple[str, Any]]:
    if isinstance(record, CpuSample):
        # sys.cpu.percent.avg stays host-wide, the mean Comet derives from the per-CPU figures of
        # log_cpu_metrics; the quota-relative figure gets its own name so the two never clash.
        if record.overall_source == "cgroup":
            pairs: list[tuple[str, Any]] = [
                ("sys.cpu.percent.avg", record.host_overall_percent),
                ("sys.cpu.cgroup.percent.avg", record.overall_percent),
            ]
        else:
            pairs = [("sys.cpu.percent.avg", record.overall_percent)]
        host_percent = pairs[0][1]
        # Comet's compute panels read these names (comet_ml's system/cpu logger writes them too).
        pairs.append(("sys.compute.overall", round(host_percent, 1) if host_percent is not None else None))
        pairs += [
            (cpu_metric_name(number), percent) for number, percent in zip(record.cpu_numbers, record.per_cpu_percent)
        ]
        return pairs
    if isinstance(record, MemorySample):
        pairs = [
            ("sys.ram.total", record.total_bytes),
            ("sys.ram.used", record.used_bytes),
            ("sys.ram.available", record.available_bytes),
            ("sys.ram.percent.used", record.used_percent),
        ]
        if record.swap_total_bytes:
            pairs += [
                ("sys.swap.total", record.swap_total_bytes),
                ("sys.swap.used", record.swap_used_bytes),
                ("sys.swap.percent.used", record.swap_used_percent),
            ]
        return pairs
    if isinstance(record, LoadSample):
        return [
            ("sys.load.avg", record.load_1m),
            ("sys.load.avg5", record.load_5m),
            ("sys.load.avg15", record.load_15m),
        ]
    if isinstance(record, DiskIoSample):
        return [
            ("sys.disk.read_bps", round(record.read_bytes_per_s)),
            ("sys.disk.write_bps", round(record.write_bytes_per_s)),
        ]
    if isinstance(record, DiskUsageSample):
        return [
            (f"sys.disk.{record.role}.used", record.used_bytes),
            (f"sys.disk.{record.role}.percent.used", record.used_percent),
        ]
    if isinstance(record, NetworkSample):
        return [
            ("sys.network.send_bps", round(record.sent_bytes_per_s)),
            ("sys.network.receive_bps", round(record.received_bytes_per_s)),
        ]
    if isinstance(record, ProcessTreeSample):
        pairs = [
            ("sys.proc.cpu.percent", record.cpu_percent),
            ("sys.compute.utilized", record.cpu_percent),
            ("sys.proc.rss", record.rss_bytes),
            ("sys.proc.threads", record.threads),
            ("sys.proc.open_files", record.open_files),
            ("sys.proc.count", record.process_count),
        ]
        pairs += [
            (f"sys.proc.gpu.{index}.used_memory", used)
            for index, used in sorted(record.gpu_memory_used_bytes_by_index.items())
        ]
        return pairs
    if isinstance(record, AgentSelfSample):
        return [("sys.agent.cpu.percent", record.cpu_percent), ("sys.agent.rss", record.rss_bytes)]
    if isinstance(record, GpuSample):
        prefix = f"sys.gpu.{record.gpu_index}."
        pairs = [(prefix + suffix, getattr(record, field_name)) for field_name, suffix in GPU_METRIC_FIELDS]
        used, total = record.memory_used_bytes, record.memory_total_bytes
        pairs.append((prefix + "percent.used_memory", 100.0 * used / total if used is not None and total else None))
        return pairs
    metric_pairs = getattr(record, "metric_pairs", None)
    if metric_pairs is not None:
        return list(metric_pairs())  # a records.MetricRecord: it names its own metrics
    raise TypeError(f"no Comet metric mapping for {type(record).__name__}: metric_points takes periodic sample records")


def metric_points(records: Iterable[object]) -> list[MetricPoint]:
    """Map periodic sample records to Comet metric points.

    Args:
        records: ``CpuSample``, ``MemorySample``, ``LoadSample``, ``DiskIoSample``,
            ``DiskUsageSample``, ``NetworkSample``, ``ProcessTreeSample``, ``AgentSelfSample`` and
            ``GpuSample`` records, and any record with a ``metric_pairs()`` method
            (``records.MetricRecord``), in any mix.

    Returns:
        ``[{"metricName", "metricValue", "timestamp"}]`` (timestamp in epoch milliseconds, the
        record's ``taken_at_ms``), in record order; ``None`` fields produce no point.

    Raises:
        TypeError: a record of a type with no metric mapping and no ``metric_pairs()`` (a static
            snapshot, for example).

    Example:
        >>> from comet_agent.records import LoadSample
        >>> metric_points([LoadSample(0.5, 0.25, 0.125, taken_at_ms=1000)])[0]
        {'metricName': 'sys.load.avg', 'metricValue': 0.5, 'timestamp': 1000}
    """
    points: list[MetricPoint] = []
    for record in records:
        for name, value in _pairs_for(record):
            if value is not None:
                points.append({"metricName": name, "metricValue": value, "timestamp": getattr(record, "taken_at_ms")})  # noqa: B009 (every record has it)
    return points


def prefixed(points: list[MetricPoint], prefix: str) -> list[MetricPoint]:
    """``points`` with ``prefix`` before each name (``"node1."``: ``node1.sys.cpu.percent.avg``,
    the names comet_ml writes with ``distributed_node_identifier``); ``""`` returns them as they are."""
    if not prefix:
        return points
    return [{**point, "metricName": prefix + point["metricName"]} for point in points]


def base_metric_name(name: str) -> str:
    """A metric name without its node/rank prefix (``node1.rank0.sys.proc.rss`` -> ``sys.proc.rss``):
    what the catalogue knows it by."""
    if name.startswith("sys."):
        return name
    at = name.find(".sys.")
    return name[at + 1 :] if at >= 0 else name


def system_metric_names(records: Iterable[object]) -> list[str]:
    """The distinct metric names ``records`` produce, sorted (system-details ``systemMetricNames``)."""
    return sorted({point["metricName"] for point in metric_points(records)})


# ------------------------------------------------------------------------------------------------
# Push windows: many samples -> one push (the agent's --sample-interval finer than the push interval)
# ------------------------------------------------------------------------------------------------


def aggregate_window(points: Iterable[MetricPoint]) -> list[MetricPoint]:
    """One point per metric name for a window of samples, by the catalogue's window rule.

    Each name is aggregated as ``comet_agent.catalogue.window_rule`` says (mean for a name not in
    the catalogue); the mean of a whole-number series is rounded. The aggregated point carries
    the timestamp of the window's last sample of that metric; names keep the order of their first
    appearance. A window of one sample is returned unchanged.
    """
    values: dict[str, list[Any]] = {}
    last_timestamp: dict[str, int] = {}
    for point in points:
        name = point["metricName"]
        values.setdefault(name, []).append(point["metricValue"])
        last_timestamp[name] = point["timestamp"]
    aggregated: list[MetricPoint] = []
    for name, series in values.items():
        entry = entry_for(base_metric_name(name))
        rule = entry.window if entry is not None else Window.MEAN
        if len(series) == 1:
            value = series[0]
        elif rule is Window.MAX:
            value = max(series)
        elif rule is Window.MIN:
            value = min(series)
        elif rule is Window.LAST:
            value = series[-1]
        elif rule is Window.OR:
            value = 0
            for item in series:
                value |= int(item)
        else:
            value = sum(series) / len(series)
            if entry is not None and entry.integer:
                value = round(value)  # bytes, milliwatts, counts: whole numbers on the wire, as Comet sends them
        aggregated.append({"metricName": name, "metricValue": value, "timestamp": last_timestamp[name]})
    return aggregated


def _is_per_cpu(name: str) -> bool:
    entry = entry_for(name)
    return entry is not None and entry.pattern == "sys.cpu.percent.<NN>"


_GPU_FIVE = {
    "free_memory": "freeMemory",
    "used_memory": "usedMemory",
    "gpu_utilization": "gpuUtilization",
    "total_memory": "totalMemory",
}


#: The most points one metric batch carries (Comet's limit, as the SDK batches).
MAX_BATCH_POINTS = 1000
#: The per-kind endpoints ``push_requests(per_kind_endpoints=True)`` uses, in order.
PER_KIND_ENDPOINTS = ("cpu_metrics", "ram_metrics", "load_metrics", "gpu_metrics")


def push_requests(
    points: Iterable[MetricPoint], *, per_kind_endpoints: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """Turn one push window's aggregated points into the requests that carry them.

    By default one ``metrics_batch`` carries every point under its own name, the request the
    official SDK's system monitors send (reference §6.3: ``sys.cpu.percent.avg``, ``sys.ram.*``,
    ``sys.gpu.<i>.*`` through the metric batch; the live SDK never calls the per-kind endpoints).
    A window of more than ``MAX_BATCH_POINTS`` points takes more batches.

    ``per_kind_endpoints=True`` (the agent's ``per_kind_endpoints`` option) sends, before the
    batch, ``cpu_metrics`` (per-CPU percents for ``log_cpu_metrics``), ``ram_metrics`` (total and
    used bytes), ``load_metrics`` (1-minute load) and ``gpu_metrics`` (Comet's five keys per GPU,
    each item with its ``timestamp``): up to five requests per push. The server derives
    ``sys.cpu.percent.NN``/``.avg``, ``sys.ram.total``/``.used``, ``sys.load.avg`` and
    ``sys.gpu.<i>.{free,used,total}_memory``/``gpu_utilization`` from those four, so the names
    are not repeated in the batch. ``cpu_metrics`` is sent only when the window has every CPU from
    ``sys.cpu.percent.01`` up (the server names its values by position); otherwise the per-CPU
    points and ``sys.cpu.percent.avg`` go in the batch.
    """
    if not per_kind_endpoints:
        aggregated = aggregate_window(points)
        return [
            ("metrics_batch", {"values": aggregated[start : start + MAX_BATCH_POINTS]})
            for start in range(0, len(aggregated), MAX_BATCH_POINTS)
        ]
    by_name = {point["metricName"]: point for point in aggregate_window(points)}
    requests: list[tuple[str, dict[str, Any]]] = []
    covered: set[str] = set()

    # The server names log_cpu_metrics' values by position (the first is .01), so the list must be
    # in CPU order (numeric: .100 after .99, not after .10) and complete from .01: one CPU missing
    # this interval (offline, counters gone backwards) would shift every later value onto its
    # neighbour's name. When it is not complete, each figure travels under its own name instead.
    per_cpu = sorted((index_of(name), name) for name in by_name if _is_per_cpu(name))
    if per_cpu and per_cpu[-1][0] == len(per_cpu):  # indices are distinct and >= 1: so exactly 1..N
        names = [name for _, name in per_cpu]
        requests.append(
            (
                "cpu_metrics",
                {
                    "cpu_metrics": [by_name[name]["metricValue"] for name in names],
                    "timestamp": by_name[names[-1]]["timestamp"],
                },
            )
        )
        covered.update(names)
        covered.add("sys.cpu.percent.avg")  # the server derives it from the list
    if "sys.ram.total" in by_name and "sys.ram.used" in by_name:
        requests.append(
            (
                "ram_metrics",
                {
                    "total_ram": by_name["sys.ram.total"]["metricValue"],
                    "used_ram": by_name["sys.ram.used"]["metricValue"],
                    "timestamp": by_name["sys.ram.used"]["timestamp"],
                },
            )
        )
        covered.update(("sys.ram.total", "sys.ram.used"))
    if "sys.load.avg" in by_name:
        requests.append(
            (
                "load_metrics",
                {"load_avg": by_name["sys.load.avg"]["metricValue"], "timestamp": by_name["sys.load.avg"]["timestamp"]},
            )
        )
        covered.add("sys.load.avg")
    gpu_items: list[dict[str, Any]] = []
    gpu_indices = sorted(
        i for i in {index_of(name) for name in by_name if name.startswith("sys.gpu.")} if i is not None
    )
    for index in gpu_indices:
        gpu_names = {suffix: f"sys.gpu.{index}.{suffix}" for suffix in _GPU_FIVE}
        if all(name in by_name for name in gpu_names.values()):
            item: dict[str, Any] = {"gpuId": index}
            for suffix, key in _GPU_FIVE.items():
                value = by_name[gpu_names[suffix]]["metricValue"]
                item[key] = int(round(value))
            item["timestamp"] = by_name[gpu_names["gpu_utilization"]]["timestamp"]
            gpu_items.append(item)
            covered.update(gpu_names.values())
    if gpu_items:
        requests.append(("gpu_metrics", {"gpus": gpu_items}))
    rest = [point for name, point in by_name.items() if name not in covered]
    for start in range(0, len(rest), MAX_BATCH_POINTS):
        requests.append(("metrics_batch", {"values": rest[start : start + MAX_BATCH_POINTS]}))
    return requests
