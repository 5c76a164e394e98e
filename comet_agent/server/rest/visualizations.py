"""``POST /clientlib/visualizations/upload``: the live Experiment's images and figures.

``Experiment.log_image`` and ``log_figure`` (and the ``shap`` / ``prophet`` integrations) send
the picture as a multipart ``file`` part with ``imageId`` (chosen by comet_ml and already handed
to the training code), ``figName``, ``figCounter``, ``step``, ``context``, ``overwrite`` and
``extension`` in the query. It is stored as an experiment asset of type ``image`` named
``figName``, under the id comet_ml chose, so ``get_asset_list(asset_type="image")``,
``get_asset(imageId)`` and the handshake's image URLs find it; the experiment page shows it as a
thumbnail.

This endpoint is what made ``end()`` wait ~20 s before it existed: comet_ml retries a failed
upload four times (1 s, 6 s, 12 s apart), whatever the error.
"""

from __future__ import annotations

import os

from aiohttp import web

from comet_agent.server.rest.assets import (
    REST_GET_IMAGE_PATH,
    WEB_ASSET_VIEW_PATH,
    Upload,
    client_asset_id,
    save_upload,
)
from comet_agent.server.rest.common import (
    authenticate,
    authenticated_json,
    get_bool,
    get_int,
    json_response,
    read_upload,
    require_experiment,
    root_url,
)
from comet_agent.server.state import state_of

IMAGE_ASSET_TYPE = "image"


async def upload_visualization(request: web.Request) -> web.Response:
    """Store an image or figure; answers ``{"imageId", "fileName", "fileSize", "web", "api"}``."""
    key_id = authenticate(request)
    query = dict(request.query)
    experiment_key = require_experiment(request, key_id, query.get("experimentKey") or query.get("experimentId"))
    data, part_filename, metadata = await read_upload(request)
    store = state_of(request).store
    image_id = client_asset_id(store, experiment_key, query.get("imageId") or query.get("assetId"))
    extension = (query.get("extension") or "").lstrip(".") or None
    file_name = query.get("figName") or (os.path.basename(part_filename) if part_filename else None) or "figure"
    upload = Upload(
        experiment_key=experiment_key,
        asset_id=image_id,
        file_name=file_name,
        asset_type=IMAGE_ASSET_TYPE,
        data=data,
        step=get_int(query, "step"),
        context=query.get("context") or None,
        metadata=metadata,
        extension=extension,
        overwrite=get_bool(query, "overwrite"),
    )
    root = root_url(request)
    answer = {
        "imageId": image_id,
        "fileName": file_name,
        "fileSize": len(data),
        "web": f"{root}{WEB_ASSET_VIEW_PATH}?imageId={image_id}&experimentKey={experiment_key}",
        "api": f"{root}{REST_GET_IMAGE_PATH}?imageId={image_id}&experimentKey={experiment_key}",
    }
    return await save_upload(request, key_id, upload, answer)


#: What ``asset/3d-limits`` answers: comet_ml's own defaults (it reads ``maxPoints`` and
#: ``maxBoxes`` unguarded in ``log_points_3d``, so an answer without them raised KeyError there).
POINTS_3D_LIMITS = {
    "maxPoints": 1_000_000,
    "maxPointsFileSizeInBytes": 0,
    "maxBoxes": 250_000,
    "maxBoxesFileSizeInBytes": 0,
}


async def points_3d_limits(request: web.Request) -> web.Response:
    """``POST /clientlib/asset/3d-limits``: the limits ``log_points_3d`` checks its input against."""
    await authenticated_json(request)
    return json_response(dict(POINTS_3D_LIMITS))
