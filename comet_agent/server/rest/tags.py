"""REST handlers for an experiment's tags: add (REST and clientlib), delete, read."""

from __future__ import annotations

from aiohttp import web

from comet_agent.server.rest.common import (
    ApiError,
    apply_write,
    body_experiment,
    get_list,
    json_response,
    query_experiment,
    saving,
)
from comet_agent.server.state import state_of


async def write_tags(request: web.Request) -> web.Response:
    """``POST write/experiment/tags`` and ``/clientlib/tags/add-tags-to-experiment``: add tags."""
    body, key_id, experiment_key = await body_experiment(request, body_key_field=True)
    tags = get_list(body, "addedTags", lambda v: isinstance(v, str), "a list of strings")
    if tags is None:
        raise ApiError(400, "'addedTags' is required")
    store = state_of(request).store
    return await apply_write(request, key_id, saving(lambda: store.add_tags(experiment_key, tags)))


async def delete_tags(request: web.Request) -> web.Response:
    """``POST write/experiment/tags/delete``: remove tags."""
    body, key_id, experiment_key = await body_experiment(request)
    tags = get_list(body, "tags", lambda v: isinstance(v, str), "a list of strings")
    if tags is None:
        raise ApiError(400, "'tags' is required")
    store = state_of(request).store
    return await apply_write(request, key_id, saving(lambda: store.delete_tags(experiment_key, tags)))


async def read_tags(request: web.Request) -> web.Response:
    """``GET experiment/tags``: the experiment's tags."""
    _, experiment_key = query_experiment(request)
    return json_response({"tags": state_of(request).store.tags(experiment_key)})
