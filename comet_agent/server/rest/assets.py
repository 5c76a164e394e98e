"""REST handlers for assets: uploads (REST ``upload-asset``, clientlib ``asset/upload``), list, download.

An upload is written to a file beside the store (0600) before its row is committed; a failed
write removes the file, and ``overwrite`` removes the replaced files once committed.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from aiohttp import web

from comet_agent.server.rest.common import (
    ApiError,
    apply_write,
    authenticate,
    get_bool,
    get_int,
    json_response,
    query_experiment,
    read_upload,
    require_experiment,
    root_url,
    unlink_quietly,
    write_upload_file,
)
from comet_agent.server.state import state_of
from comet_agent.server.store import now_ms


async def upload_asset(request: web.Request) -> web.Response:
    """Assets and images (REST ``write/experiment/upload-asset``, clientlib ``asset/upload``)."""
    key_id = authenticate(request)
    query = dict(request.query)
    experiment_key = require_experiment(request, key_id, query.get("experimentKey") or query.get("experimentId"))
    data, part_filename, metadata = await read_upload(request)
    asset_type = query.get("type") or "asset"
    file_name = query.get("fileName") or (os.path.basename(part_filename) if part_filename else None) or "file"
    step = get_int(query, "step")
    overwrite = get_bool(query, "overwrite")
    extension = (query.get("extension") or os.path.splitext(file_name)[1]).lstrip(".") or None
    store = state_of(request).store
    asset_id = uuid.uuid4().hex
    written: list[str] = []
    replaced: list[str] = []

    def apply() -> dict:
        path = write_upload_file(store, experiment_key, asset_id, data)
        written.append(path)
        if overwrite:
            replaced.extend(store.remove_assets_named(experiment_key, file_name, asset_type))
        store.add_asset(
            {
                "asset_id": asset_id,
                "experiment_key": experiment_key,
                "file_name": file_name,
                "size_bytes": len(data),
                "asset_type": asset_type,
                "step": step,
                "context": query.get("context") or None,
                "metadata_json": json.dumps(metadata) if metadata is not None else None,
                "grouping_name": query.get("groupingName") or None,
                "extension": extension,
                "created_ms": now_ms(),
                "path": path,
            }
        )
        store.update_experiment(experiment_key)
        return {
            "assetId": asset_id,
            "fileName": file_name,
            "fileSize": len(data),
            "web": _asset_link(request, experiment_key, asset_id),
            "api": _asset_link(request, experiment_key, asset_id),
        }

    try:
        response = await apply_write(request, key_id, apply)
    except BaseException:
        for path in written:  # the transaction rolled back: leave no orphan file
            unlink_quietly(path)
        raise
    for path in replaced:
        unlink_quietly(path)
    return response


def _asset_link(request: web.Request, experiment_key: str, asset_id: str) -> str:
    return (
        f"{root_url(request)}/api/rest/v2/experiment/asset/get-asset?assetId={asset_id}&experimentKey={experiment_key}"
    )


def asset_json(request: web.Request, row: dict) -> dict:
    """An asset row as Comet's asset list item."""
    asset_type = row["asset_type"]
    return {
        "fileName": row["file_name"],
        "fileSize": row["size_bytes"],
        "runContext": row["context"],
        "step": row["step"],
        "remote": False,
        "link": _asset_link(request, row["experiment_key"], row["asset_id"]),
        "compressedAssetLink": "",
        "s3Link": "",
        "createdAt": row["created_ms"],
        "dir": asset_type,
        "canView": False,
        "audio": asset_type == "audio",
        "video": asset_type == "video",
        "histogram": asset_type == "histogram_combined_3d",
        "image": asset_type == "image",
        "type": asset_type,
        "metadata": row["metadata_json"],
        "assetId": row["asset_id"],
        "tags": [],
        "curlDownload": "",
        "experimentKey": row["experiment_key"],
        "groupingName": row["grouping_name"],
    }


async def asset_list(request: web.Request) -> web.Response:
    """``GET experiment/asset/list``: the experiment's assets, of one ``type`` or all."""
    _, experiment_key = query_experiment(request)
    asset_type = request.query.get("type")
    rows = state_of(request).store.assets(experiment_key, None if asset_type in (None, "", "all") else asset_type)
    return json_response({"assets": [asset_json(request, r) for r in rows]})


async def get_asset(request: web.Request) -> web.Response:
    """``GET experiment/asset/get-asset?assetId=``: the asset's bytes."""
    _, experiment_key = query_experiment(request)
    asset_id = request.query.get("assetId")
    if not asset_id:
        raise ApiError(400, "'assetId' is required")
    row = state_of(request).store.asset(experiment_key, asset_id)
    if row is None or not Path(row["path"]).exists():
        raise ApiError(404, f"asset {asset_id} not found")
    return web.Response(body=Path(row["path"]).read_bytes(), content_type="application/octet-stream")
