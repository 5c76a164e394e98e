"""REST handlers for models: assets of type ``model-element`` grouped by model name."""

from __future__ import annotations

import io
import zipfile

from aiohttp import web

from comet_agent.server.rest.assets import asset_json
from comet_agent.server.rest.common import (
    ApiError,
    json_response,
    query_experiment,
)
from comet_agent.server.state import state_of


async def model_list(request: web.Request) -> web.Response:
    """``GET experiment/model``: the experiment's models with their assets."""
    _, experiment_key = query_experiment(request)
    store = state_of(request).store
    models = []
    for name in store.model_names(experiment_key):
        rows = store.assets(experiment_key, "model-element", name)
        models.append(
            {
                "modelName": name,
                "experimentModelId": f"{experiment_key}-{name}",
                "experimentKey": experiment_key,
                "assets": [asset_json(request, r) for r in rows],
            }
        )
    return json_response({"models": models})


def _model_rows(request: web.Request, experiment_key: str) -> list[dict]:
    name = request.query.get("modelName")
    if not name:
        raise ApiError(400, "'modelName' is required")
    return state_of(request).store.assets(experiment_key, "model-element", name)


async def model_asset_list(request: web.Request) -> web.Response:
    """``GET experiment/model/asset/list?modelName=``: one model's assets."""
    _, experiment_key = query_experiment(request)
    return json_response({"assets": [asset_json(request, r) for r in _model_rows(request, experiment_key)]})


async def model_download(request: web.Request) -> web.Response:
    """``GET experiment/model/download?modelName=``: one model's files as a zip."""
    _, experiment_key = query_experiment(request)
    rows = _model_rows(request, experiment_key)
    if not rows:
        raise ApiError(404, f"model {request.query.get('modelName')} not found")
    return web.Response(body=zip_asset_rows(rows), content_type="application/zip")


def zip_asset_rows(rows: list[dict]) -> bytes:
    """A zip of stored assets (store rows), each under its file name: a model's download."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for row in rows:
            archive.write(row["path"], row["file_name"])
    return buffer.getvalue()
