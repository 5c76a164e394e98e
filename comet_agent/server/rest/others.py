"""REST handlers for "others" (``log_other``): free key/value pairs; the ``Name`` other names the experiment."""

from __future__ import annotations

from aiohttp import web

from comet_agent.server.rest.common import (
    SAVED,
    ApiError,
    apply_write,
    body_experiment,
    get_str,
    is_scalar,
    json_response,
    query_experiment,
    timestamp_or_now,
    type_error,
)
from comet_agent.server.state import state_of


async def write_log_other(request: web.Request) -> web.Response:
    """``POST write/experiment/log-other``: one key/value (``Name`` also renames the experiment)."""
    body, key_id, experiment_key = await body_experiment(request, allow_non_finite=True)
    name = get_str(body, "key", required=True, allow_empty=False)
    if "value" not in body:
        raise ApiError(400, "'value' is required")
    value = body["value"]
    if not is_scalar(value):
        raise type_error("value", "a number, string or boolean", value)
    timestamp = timestamp_or_now(body)
    store = state_of(request).store

    def apply() -> dict:
        store.add_other(experiment_key, name, value, timestamp)
        if name == "Name":  # Comet's experiment name is the "Name" other
            store.update_experiment(experiment_key, name=None if value is None else str(value))
        return dict(SAVED)

    return await apply_write(request, key_id, apply)


async def others_summary(request: web.Request) -> web.Response:
    """``GET experiment/log-other``: the current value of each other."""
    _, experiment_key = query_experiment(request)
    return json_response({"values": state_of(request).store.others_summary(experiment_key)})
