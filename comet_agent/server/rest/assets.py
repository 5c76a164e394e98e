"""REST handlers for assets: uploads (REST ``upload-asset``, clientlib ``asset/upload``), list, download.

An upload is written to a file beside the store (0600) before its row is committed; a failed
write removes the file, and ``overwrite`` removes the replaced files once committed.

Asset ids: comet_ml chooses the id itself (``assetId`` in the query, a uuid4 hex) and hands it
to the training code before the upload even starts, so the server stores the upload under that
id (``client_asset_id``); an upload sent again with the same id (a retry after a lost answer)
replaces the first. Only a request without one gets a new id.

Remote assets (``log_remote_asset``): ``isRemote=True`` and a ``link`` part instead of a
``file``; the URI is recorded (``asset_links``) and listed with ``remote: true`` and the URI as
``link``; there are no bytes to download.

An upload naming an ``artifactVersionId`` is a file of an artifact version (``artifacts.py``).

URLs: the handshake's ``cometRestApiAssetUrl`` / ``cometWebAssetUrl`` (and the image ones) are
prefixes comet_ml completes with ``?assetId=..&experimentKey=..`` for the dicts ``log_asset`` and
``log_image`` return (``asset_url_templates``); they point at ``get-asset`` / ``image/get-image``
on this server and at the page route ``/local/asset/view`` (``pages/assets.py``).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from comet_agent.server.rest.artifacts import artifact_asset_bytes, save_artifact_upload
from comet_agent.server.rest.common import (
    ApiError,
    apply_write,
    authenticate,
    file_response,
    get_bool,
    get_int,
    json_response,
    query_experiment,
    read_upload,
    require_experiment,
    root_url,
    unlink_quietly,
    upload_metadata,
    write_upload_file,
)
from comet_agent.server.state import state_of
from comet_agent.server.store import Store, now_ms

#: An id a client may choose for its upload: comet_ml sends 32 hex digits (uuid4).
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Largest remote-asset URI kept (a URI, not a file).
MAX_REMOTE_URI_CHARS = 8192
#: Where the web links of assets and images point (a page route, ``pages/assets.py``).
WEB_ASSET_VIEW_PATH = "/local/asset/view"
REST_GET_ASSET_PATH = "/api/rest/v2/experiment/asset/get-asset"
REST_GET_IMAGE_PATH = "/api/rest/v2/image/get-image"


def asset_url_templates(request: web.Request) -> dict[str, str]:
    """The handshake's URL prefixes comet_ml completes with ``?assetId=`` / ``?imageId=`` and ``experimentKey``."""
    root = root_url(request)
    return {
        "cometWebAssetUrl": root + WEB_ASSET_VIEW_PATH,
        "cometWebImageUrl": root + WEB_ASSET_VIEW_PATH,
        "cometRestApiAssetUrl": root + REST_GET_ASSET_PATH,
        "cometRestApiImageUrl": root + REST_GET_IMAGE_PATH,
    }


def client_asset_id(store: Store, experiment_key: str, chosen: Any) -> str:
    """The id to store an upload under: the client's own when it gave a usable one, else a new one.

    Raises:
        ApiError: 400 when the id is malformed or already names another experiment's asset.
    """
    if chosen is None or chosen == "":
        return uuid.uuid4().hex
    if not isinstance(chosen, str) or not _CLIENT_ID.fullmatch(chosen):
        raise ApiError(400, "'assetId' must be 1 to 64 letters, digits, '-' or '_'")
    holder = store.asset_experiment(chosen)
    if holder is not None and holder != experiment_key:
        raise ApiError(400, f"asset id {chosen} is already used by another experiment; send a new id")
    return chosen


@dataclass
class Upload:
    """One asset or image to store for an experiment (``data`` None for a remote asset)."""

    experiment_key: str
    asset_id: str
    file_name: str
    asset_type: str
    data: bytes | None
    remote_uri: str | None = None
    step: int | None = None
    context: str | None = None
    metadata: dict | None = None
    grouping_name: str | None = None
    extension: str | None = None
    overwrite: bool = False


async def save_upload(request: web.Request, key_id: str, upload: Upload, answer: dict) -> web.Response:
    """Store ``upload`` (file first, then its row, in one write) and answer ``answer``.

    A row already holding the upload's id (a resent upload) or, with ``overwrite``, the same
    name and type is replaced; the files it leaves behind are removed once committed.
    """
    store = state_of(request).store
    written: list[str] = []
    replaced: list[str] = []

    def apply() -> dict:
        path = ""
        if upload.data is not None:
            path = write_upload_file(store, upload.experiment_key, upload.asset_id, upload.data)
            written.append(path)
        previous = store.remove_asset(upload.asset_id)
        if previous:
            replaced.append(previous)
        if upload.overwrite:
            replaced.extend(store.remove_assets_named(upload.experiment_key, upload.file_name, upload.asset_type))
        store.add_asset(
            {
                "asset_id": upload.asset_id,
                "experiment_key": upload.experiment_key,
                "file_name": upload.file_name,
                "size_bytes": len(upload.data) if upload.data is not None else 0,
                "asset_type": upload.asset_type,
                "step": upload.step,
                "context": upload.context,
                "metadata_json": json.dumps(upload.metadata) if upload.metadata is not None else None,
                "grouping_name": upload.grouping_name,
                "extension": upload.extension,
                "created_ms": now_ms(),
                "path": path,
            }
        )
        if upload.remote_uri is not None:
            store.add_asset_link(upload.asset_id, upload.remote_uri)
        store.update_experiment(upload.experiment_key)
        return answer

    try:
        response = await apply_write(request, key_id, apply)
    except BaseException:
        for path in written:  # the transaction rolled back: leave no orphan file
            unlink_quietly(path)
        raise
    for path in replaced:
        if path and path not in written:  # a resent upload rewrote the same file
            unlink_quietly(path)
    return response


async def read_remote_link(request: web.Request) -> tuple[str, dict | None]:
    """The ``link`` part (the URI) and ``metadata`` part of a remote-asset upload."""
    if not request.headers.get("Content-Type", "").startswith("multipart/form-data"):
        raise ApiError(400, "a remote asset is sent as multipart/form-data with a 'link' part")
    try:
        form = await request.post()
    except ValueError as exc:
        raise ApiError(400, f"malformed multipart body: {exc}") from None
    link = form.get("link")
    if isinstance(link, web.FileField):
        link = link.file.read().decode("utf-8", "replace")
    if isinstance(link, (bytes, bytearray)):
        link = bytes(link).decode("utf-8", "replace")
    if not isinstance(link, str) or not link.strip():
        raise ApiError(400, "a remote asset (isRemote=true) needs a 'link' part holding its URI")
    if len(link) > MAX_REMOTE_URI_CHARS:
        raise ApiError(400, f"the remote asset URI is longer than {MAX_REMOTE_URI_CHARS} characters")
    return link.strip(), upload_metadata(form)


async def upload_asset(request: web.Request) -> web.Response:
    """Assets, images and remote assets (REST ``write/experiment/upload-asset``, clientlib ``asset/upload``)."""
    key_id = authenticate(request)
    query = dict(request.query)
    experiment_key = require_experiment(request, key_id, query.get("experimentKey") or query.get("experimentId"))
    remote = get_bool(query, "isRemote")
    if remote:
        link, metadata = await read_remote_link(request)
        data: bytes | None = None
        part_filename = None
    else:
        link = None
        data, part_filename, metadata = await read_upload(request)
    if query.get("artifactVersionId"):
        return await save_artifact_upload(request, key_id, query, data, link, metadata)
    store = state_of(request).store
    asset_id = client_asset_id(store, experiment_key, query.get("assetId"))
    default_name = os.path.basename(link.rstrip("/")) if link else None
    file_name = (
        query.get("fileName") or default_name or (os.path.basename(part_filename) if part_filename else None) or "file"
    )
    extension = (query.get("extension") or os.path.splitext(file_name)[1]).lstrip(".") or None
    upload = Upload(
        experiment_key=experiment_key,
        asset_id=asset_id,
        file_name=file_name,
        asset_type=query.get("type") or "asset",
        data=data,
        remote_uri=link,
        step=get_int(query, "step"),
        context=query.get("context") or None,
        metadata=metadata,
        grouping_name=query.get("groupingName") or None,
        extension=extension,
        overwrite=get_bool(query, "overwrite"),
    )
    link_to_it = _asset_link(request, experiment_key, asset_id)
    answer = {
        "assetId": asset_id,
        "fileName": file_name,
        "fileSize": len(data) if data is not None else 0,
        "web": f"{root_url(request)}{WEB_ASSET_VIEW_PATH}?assetId={asset_id}&experimentKey={experiment_key}",
        "api": link_to_it,
    }
    return await save_upload(request, key_id, upload, answer)


def _asset_link(request: web.Request, experiment_key: str, asset_id: str) -> str:
    return f"{root_url(request)}{REST_GET_ASSET_PATH}?assetId={asset_id}&experimentKey={experiment_key}"


def asset_json(request: web.Request, row: dict, remote_uri: str | None = None) -> dict:
    """An asset row as Comet's asset list item (``remote_uri``: the URI of a remote asset)."""
    asset_type = row["asset_type"]
    return {
        "fileName": row["file_name"],
        "fileSize": row["size_bytes"],
        "runContext": row["context"],
        "step": row["step"],
        "remote": remote_uri is not None,
        "link": remote_uri if remote_uri is not None else _asset_link(request, row["experiment_key"], row["asset_id"]),
        "compressedAssetLink": "",
        "s3Link": "",
        "createdAt": row["created_ms"],
        "dir": asset_type,
        "canView": asset_type == "image",
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
    store = state_of(request).store
    rows = store.assets(experiment_key, None if asset_type in (None, "", "all") else asset_type)
    links = store.asset_links([r["asset_id"] for r in rows])
    return json_response({"assets": [asset_json(request, r, links.get(r["asset_id"])) for r in rows]})


def asset_file(store: Store, experiment_key: str, asset_id: str) -> tuple[dict, Path]:
    """An experiment asset's row and the file holding its bytes.

    Raises:
        ApiError: 404 when there is no such asset, or it is a remote one (no bytes here).
    """
    row = store.asset(experiment_key, asset_id)
    if row is None:
        raise ApiError(404, f"asset {asset_id} not found")
    if not row["path"]:
        uri = store.asset_links([asset_id]).get(asset_id, "")
        raise ApiError(404, f"asset {asset_id} is a remote asset: fetch it from {uri}")
    path = Path(row["path"])
    if not path.exists():
        raise ApiError(404, f"asset {asset_id} not found")
    return row, path


async def get_asset(request: web.Request) -> web.StreamResponse:
    """``GET experiment/asset/get-asset?assetId=``: the asset's bytes (an artifact file's with ``artifactVersionId``)."""
    if request.query.get("artifactVersionId"):
        return await artifact_asset_bytes(request, request.query.get("assetId"), request.query["artifactVersionId"])
    _, experiment_key = query_experiment(request)
    asset_id = request.query.get("assetId")
    if not asset_id:
        raise ApiError(400, "'assetId' is required")
    _, path = asset_file(state_of(request).store, experiment_key, asset_id)
    return file_response(path)


async def get_image(request: web.Request) -> web.StreamResponse:
    """``GET image/get-image?imageId=&experimentKey=``: an image's bytes (the handshake's image API URL)."""
    _, experiment_key = query_experiment(request)
    image_id = request.query.get("imageId") or request.query.get("assetId")
    if not image_id:
        raise ApiError(400, "'imageId' is required")
    _, path = asset_file(state_of(request).store, experiment_key, image_id)
    return file_response(path)
