"""REST handlers for an experiment's text fields: ``html``, ``code`` and ``graph``.

Each is one text per experiment, written whole (``override``) or appended to; HTML appends
unless told to override, code and graph replace unless told not to (as Comet does).
"""

from __future__ import annotations

from aiohttp import web

from comet_agent.server.rest.common import (
    SAVED,
    apply_write,
    body_experiment,
    experiment_found,
    get_bool,
    get_str,
    json_response,
    query_experiment,
)
from comet_agent.server.state import state_of


def text_writer(field: str, column: str, append_unless_override: bool = False):
    """The ``POST write/experiment/<field>`` handler storing ``field`` into ``column``."""

    async def handler(request: web.Request) -> web.Response:
        body, key_id, experiment_key = await body_experiment(request)
        text = get_str(body, field, required=True)
        override = get_bool(body, "override", default=not append_unless_override)
        store = state_of(request).store

        def apply() -> dict:
            new_text = text
            if not override:
                previous = experiment_found(store.experiment_row(experiment_key), experiment_key)[column]
                new_text = (previous or "") + text
            store.update_experiment(experiment_key, **{column: new_text})
            return dict(SAVED)

        return await apply_write(request, key_id, apply)

    return handler


def text_reader(field: str, column: str):
    """The ``GET experiment/<field>`` handler answering ``{field: text}``."""

    async def handler(request: web.Request) -> web.Response:
        _, experiment_key = query_experiment(request)
        row = experiment_found(state_of(request).store.experiment_row(experiment_key), experiment_key)
        return json_response({field: row[column]})

    return handler
