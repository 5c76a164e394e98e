"""REST handlers for metrics: single points, clientlib batches, the system metric endpoints, reads.

A point is ``(name, value, step, epoch, context, timestamp ms)``. ``cpu-metrics``,
``ram-metrics``, ``load-metrics`` and ``gpu-metrics`` store Comet's ``sys.*`` metric names
(``sys.cpu.percent.01``, ``sys.ram.used``, ``sys.gpu.0.gpu_utilization``, ...). A value may be
``NaN`` or ``Infinity`` (a diverged loss): it is kept and read back as the string ``"NaN"``.
"""

from __future__ import annotations

from aiohttp import web

from comet_agent.server.rest.common import (
    ApiError,
    apply_write,
    body_experiment,
    get_int,
    get_list,
    get_number,
    get_str,
    is_scalar,
    json_response,
    query_experiment,
    saving,
    timestamp_or_now,
    type_error,
)
from comet_agent.server.state import state_of


def _metric_point(item: dict, name_field: str = "metricName", value_field: str = "metricValue") -> tuple:
    name = get_str(item, name_field, required=True, allow_empty=False)
    if value_field not in item:
        raise ApiError(400, f"'{value_field}' is required")
    value = item[value_field]
    if not is_scalar(value):
        raise type_error(value_field, "a number, string or boolean", value)
    context = get_str(item, "context")
    return (name, value, get_int(item, "step"), get_int(item, "epoch"), context, timestamp_or_now(item))


async def write_metric(request: web.Request) -> web.Response:
    """``POST write/experiment/metric``: one metric point."""
    body, key_id, experiment_key = await body_experiment(request, allow_non_finite=True)
    point = _metric_point(body)
    store = state_of(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_metrics(experiment_key, [point])))


async def batch_metric(request: web.Request) -> web.Response:
    """POST /clientlib/batch/logger/experiment/metric: many points, one transaction."""
    body, key_id, experiment_key = await body_experiment(request, body_key_field=True, allow_non_finite=True)
    values = get_list(body, "values", lambda v: isinstance(v, dict), "a list of objects")
    if values is None:
        raise ApiError(400, "'values' is required")
    points = [_metric_point(item) for item in values]
    store = state_of(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_metrics(experiment_key, points)))


def _system_point_common(body: dict) -> tuple:
    return get_int(body, "step"), get_int(body, "epoch"), get_str(body, "context"), timestamp_or_now(body)


async def write_cpu_metrics(request: web.Request) -> web.Response:
    """``POST write/experiment/cpu-metrics``: per-core percentages, stored with their average."""
    body, key_id, experiment_key = await body_experiment(request, allow_non_finite=True)
    percents = get_list(
        body,
        "cpuPercentUtilization",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "a list of numbers",
    )
    if not percents:
        raise ApiError(400, "'cpuPercentUtilization' must be a non-empty list of numbers")
    step, epoch, context, timestamp = _system_point_common(body)
    points = [(f"sys.cpu.percent.{i:02d}", v, step, epoch, context, timestamp) for i, v in enumerate(percents, 1)]
    points.append(("sys.cpu.percent.avg", sum(percents) / len(percents), step, epoch, context, timestamp))
    store = state_of(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_metrics(experiment_key, points)))


async def write_ram_metrics(request: web.Request) -> web.Response:
    """``POST write/experiment/ram-metrics``: total and used RAM in bytes."""
    body, key_id, experiment_key = await body_experiment(request, allow_non_finite=True)
    total, used = get_number(body, "totalRam"), get_number(body, "usedRam")
    step, epoch, context, timestamp = _system_point_common(body)
    points = [
        ("sys.ram.total", total, step, epoch, context, timestamp),
        ("sys.ram.used", used, step, epoch, context, timestamp),
    ]
    store = state_of(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_metrics(experiment_key, points)))


async def write_load_metrics(request: web.Request) -> web.Response:
    """``POST write/experiment/load-metrics``: the load average."""
    body, key_id, experiment_key = await body_experiment(request, allow_non_finite=True)
    load = get_number(body, "loadAverage")
    step, epoch, context, timestamp = _system_point_common(body)
    points = [("sys.load.avg", load, step, epoch, context, timestamp)]
    store = state_of(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_metrics(experiment_key, points)))


_GPU_METRIC_FIELDS = (
    ("freeMemory", "free_memory"),
    ("usedMemory", "used_memory"),
    ("gpuUtilization", "gpu_utilization"),
    ("totalMemory", "total_memory"),
)


async def write_gpu_metrics(request: web.Request) -> web.Response:
    """``POST write/experiment/gpu-metrics``: free / used / total memory and utilisation per GPU."""
    body, key_id, experiment_key = await body_experiment(request, allow_non_finite=True)
    gpus = get_list(body, "gpus", lambda v: isinstance(v, dict), "a list of objects")
    if not gpus:
        raise ApiError(400, "'gpus' must be a non-empty list of objects")
    step, epoch, context, timestamp = _system_point_common(body)
    points = []
    for gpu in gpus:
        gpu_id = get_int(gpu, "gpuId", required=True)
        # comet-agent extension: an item may carry its own sample time (epoch ms), so a spooled
        # sample replayed after an outage keeps its original timestamp.
        gpu_timestamp = get_int(gpu, "timestamp")
        for field, suffix in _GPU_METRIC_FIELDS:
            value = get_number(gpu, field, required=False)
            if value is not None:
                points.append(
                    (
                        f"sys.gpu.{gpu_id}.{suffix}",
                        value,
                        step,
                        epoch,
                        context,
                        gpu_timestamp if gpu_timestamp is not None else timestamp,
                    )
                )
    store = state_of(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_metrics(experiment_key, points)))


async def metrics_get_all(request: web.Request) -> web.Response:
    """``GET experiment/metrics/get-all``: every point of every metric."""
    _, experiment_key = query_experiment(request)
    return json_response({"metrics": state_of(request).store.metrics(experiment_key)})


async def metrics_get_metric(request: web.Request) -> web.Response:
    """``GET experiment/metrics/get-metric?metricName=``: every point of one metric."""
    _, experiment_key = query_experiment(request)
    name = request.query.get("metricName")
    if not name:
        raise ApiError(400, "'metricName' is required")
    return json_response({"metrics": state_of(request).store.metrics(experiment_key, name)})


async def metrics_summary(request: web.Request) -> web.Response:
    """``GET experiment/metrics/summary``: last, min and max of each metric."""
    _, experiment_key = query_experiment(request)
    return json_response({"values": state_of(request).store.metrics_summary(experiment_key)})
