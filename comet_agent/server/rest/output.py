"""REST handlers for an experiment's captured stdout and stderr lines."""

from __future__ import annotations

from aiohttp import web

from comet_agent.server.rest.common import (
    ApiError,
    apply_write,
    body_experiment,
    get_bool,
    get_int,
    get_list,
    get_str,
    json_response,
    query_experiment,
    saving,
)
from comet_agent.server.state import state_of


async def write_output(request: web.Request) -> web.Response:
    """``POST write/experiment/output``: output lines with their stderr flag and offsets."""
    body, key_id, experiment_key = await body_experiment(request, body_key_field=True)
    lines = get_list(body, "outputLines", lambda v: isinstance(v, dict), "a list of objects")
    if lines is None:
        raise ApiError(400, "'outputLines' is required")
    context = get_str(body, "runContext")
    rows = [
        (
            get_str(line, "output", required=True),
            int(get_bool(line, "stderr")),
            get_int(line, "localTimestamp"),
            get_int(line, "offset"),
            context,
        )
        for line in lines
    ]
    store = state_of(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_output_lines(experiment_key, rows)))


async def read_output(request: web.Request) -> web.Response:
    """``GET experiment/output``: the captured output as one text."""
    _, experiment_key = query_experiment(request)
    return json_response({"output": state_of(request).store.output(experiment_key)})
