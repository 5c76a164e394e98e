"""REST handlers for hyperparameters: single writes, clientlib batches and the summary read."""

from __future__ import annotations

from aiohttp import web

from comet_agent.server.rest.common import (
    ApiError,
    apply_write,
    body_experiment,
    get_int,
    get_list,
    get_str,
    is_scalar,
    json_response,
    query_experiment,
    saving,
    timestamp_or_now,
    type_error,
)
from comet_agent.server.state import state_of


def _parameter_point(item: dict, source: str | None) -> tuple:
    name = get_str(item, "parameterName", required=True, allow_empty=False)
    if "parameterValue" not in item:
        raise ApiError(400, "'parameterValue' is required")
    value = item["parameterValue"]
    if not (is_scalar(value) or isinstance(value, list)):
        raise type_error("parameterValue", "a number, string, boolean or list", value)
    return (
        name,
        value,
        get_int(item, "step"),
        get_str(item, "context"),
        get_str(item, "source") or source,
        timestamp_or_now(item),
    )


async def write_parameter(request: web.Request) -> web.Response:
    """``POST write/experiment/parameter``: one parameter value (source ``manual`` unless given)."""
    body, key_id, experiment_key = await body_experiment(request, allow_non_finite=True)
    point = _parameter_point(body, "manual")
    store = state_of(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_parameters(experiment_key, [point])))


async def batch_parameter(request: web.Request) -> web.Response:
    """``POST /clientlib/batch/logger/experiment/parameter``: many values, one transaction."""
    body, key_id, experiment_key = await body_experiment(request, body_key_field=True, allow_non_finite=True)
    values = get_list(body, "values", lambda v: isinstance(v, dict), "a list of objects")
    if values is None:
        raise ApiError(400, "'values' is required")
    points = [_parameter_point(item, "manual") for item in values]
    store = state_of(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_parameters(experiment_key, points)))


async def parameters_summary(request: web.Request) -> web.Response:
    """``GET experiment/parameters``: the current value of each parameter."""
    _, experiment_key = query_experiment(request)
    return json_response({"values": state_of(request).store.parameters_summary(experiment_key)})
